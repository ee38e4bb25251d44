"""The pieces of devhost's HTTP front end (devhost.server.DevServer puts them together):
messages (the request as handlers see it, and their answers), functions (the app's triggered
functions and how the worker calls them), triggers (HTTP, Event Grid and timer triggers),
durable_api (the Durable extension's HTTP API), asgi (the Starlette app and the h11
protocol uvicorn serves it with)."""
