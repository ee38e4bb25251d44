"""Reading and writing: blob and local storage with one client, virtual stores (kerchunk,
Icechunk), file format sniffing, the memory watch, library health."""
