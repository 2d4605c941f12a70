"""The bare reference server of the HTTP benchmark: stdlib ThreadingHTTPServer + onnxruntime, V2 JSON,
TCP_NODELAY, keep-alive, no validation, no batching. What a practitioner would write in an afternoon.

    python bench/reference_server.py MODEL_DIR PORT
"""

import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort


def main(model_dir: str, port: int) -> None:
    with open(f"{model_dir}/manifest.json") as f:
        manifest = json.load(f)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(f"{model_dir}/{manifest['version']}/model.onnx", options)
    names = [o.name for o in session.get_outputs()]
    datatypes = {o["name"]: o["datatype"] for o in manifest["outputs"]}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.reply(200, b'{"ready":true}')

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            tensor = request["inputs"][0]
            features = np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            outputs = session.run(names, {"features": features})
            body = json.dumps(
                {
                    "model_name": manifest["name"],
                    "outputs": [
                        {
                            "name": n,
                            "datatype": datatypes[n],
                            "shape": list(v.shape),
                            "data": v.ravel().tolist(),
                        }
                        for n, v in zip(names, outputs)
                    ],
                }
            ).encode()
            self.reply(200, body)

        def reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
