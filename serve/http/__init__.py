"""The HTTP transport over the DataPlane: `app` (the ASGI application: route table → handler, named
errors → status), `codec` (V2 JSON and binary bodies, V1 JSON), `connection` (uvicorn's settings and its
connection guarded against slow and oversized clients). Never imports serve.grpc."""
