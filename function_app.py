"""The Function App: wiring only. One blueprint per module, registered here."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from activities.releases import bp as release_activities
from activities.runs import bp as run_activities
from activities.stages import bp as activities
from api.events import bp as events_api
from api.http import bp as http_api
from api.maintenance import bp as maintenance
from api.operator import bp as operator_api
from api.page import bp as operator_page
from api.releases import bp as releases_api
from orchestrators.pipeline import bp as orchestrators
from orchestrators.release import bp as releases
from orchestrators.watcher import bp as watchers
from shared.io.health import record_missing_packages
from shared.model.telemetry import configure_from_env

# A missing library does not stop the app from loading: it is logged here; a broken one is
# reported by /api/health and named by every activity that needs it. Heavy libraries are
# imported where they are used, so a cold start stays short.
record_missing_packages()
# Log exporting is configuration (PIPELINE_LOG_EXPORTER; docs/telemetry.md).
configure_from_env()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(orchestrators)
app.register_functions(activities)
app.register_functions(run_activities)
app.register_functions(http_api)
app.register_functions(watchers)
app.register_functions(events_api)
app.register_functions(releases_api)
app.register_functions(maintenance)
app.register_functions(releases)
app.register_functions(release_activities)
app.register_functions(operator_api)
app.register_functions(operator_page)
