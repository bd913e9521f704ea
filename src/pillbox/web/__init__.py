"""The web work type: the user's ASGI app served by uvicorn on the supervisor's socket."""
