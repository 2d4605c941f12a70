"""The minimal reference server of the gRPC benchmark: grpc.aio + onnxruntime with tritonclient's own
generated servicer, raw tensors in and out, no validation, no batching. What a practitioner would write
in an afternoon.

    python bench/reference_grpc_server.py MODEL_DIR PORT
"""

import asyncio
import json
import sys

import grpc
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import service_pb2, service_pb2_grpc


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, model_dir: str):
        with open(f"{model_dir}/manifest.json") as f:
            self.manifest = json.load(f)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(f"{model_dir}/{self.manifest['version']}/model.onnx", options)
        self.names = [o.name for o in self.session.get_outputs()]
        self.datatypes = {o["name"]: o["datatype"] for o in self.manifest["outputs"]}

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelInfer(self, request, context):
        tensor = request.inputs[0]
        features = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(tensor.shape)
        outputs = self.session.run(self.names, {"features": features})
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="1")
        for name, value in zip(self.names, outputs):
            response.outputs.add(name=name, datatype=self.datatypes[name], shape=value.shape)
            response.raw_output_contents.append(value.tobytes())
        return response


async def main(model_dir: str, port: int) -> None:
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(model_dir), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(sys.argv[1], int(sys.argv[2])))
    except ImportError:
        asyncio.run(main(sys.argv[1], int(sys.argv[2])))
