"""A stand-in for TF Serving (`tensorflow_model_server`) for tests: serves SavedModels on
127.0.0.1 only, on ephemeral ports, and stops by itself after `lifetime_s` seconds.

It reads a TF Serving model config (`export/models.config`, text `ModelServerConfig`) with the
container paths mapped to local folders (`mounts`, as `docker run -v` does), serves the latest
`num_versions` numeric version directories of each model, and answers as TF Serving does
(tensorflow/serving `g3doc/api_rest.md`, `model_servers/http_rest_api_*.cc`,
`util/json_tensor.cc`):

REST (`rest_url`):
  GET  /v1/models/<name>[/versions/<v>]            GetModelStatusResponse JSON
  GET  /v1/models/<name>[/versions/<v>]/metadata   {"model_spec", "metadata": {"signature_def":
                                                   SignatureDefMap JSON, proto field names}}
  POST /v1/models/<name>[/versions/<v>]:predict    {"signature_name"?, "instances" | "inputs"}
    row format: a list with one value per batch item, each an object {input: value} or (one
    input) the value itself -> {"predictions": [{output: value}, ...]} (the bare value if the
    signature has one output); columnar: {input: batched value} or (one input) the value ->
    {"outputs": {output: batched value}}. Binary strings are {"b64": ...} on the way in; a
    DT_STRING output is written as text unless its name ends in `_bytes` ({"b64": ...}).
  errors: {"error": "<message>"} with 400 (invalid argument) or 404 (unknown model, version
  or path).
gRPC (`grpc_target`): tensorflow.serving.PredictionService Predict and GetModelMetadata
  (metadata_field ["signature_def"]), with INVALID_ARGUMENT / NOT_FOUND errors.

    with StandIn.from_config(models_config, mounts={"/models": exports_dir}) as server:
        subprocess.run([... "export/rest_client.py", f"--server={server.rest_url}", ...])

Run by hand: python tests/serving_standin.py --model_config_file=export/models.config
--mount=/models=exports [--lifetime_s=600] (prints both addresses).
"""
from __future__ import annotations

import base64
import json
import os
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

HOST = "127.0.0.1"
DEFAULT_SIGNATURE = "serving_default"
_PREDICT = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)",
                      re.IGNORECASE)
_STATUS = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(?:/(metadata))?",
                     re.IGNORECASE)


class ServingError(Exception):
    """A request error; `code` is the gRPC status name (INVALID_ARGUMENT, NOT_FOUND)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _invalid(message):
    return ServingError("INVALID_ARGUMENT", message)


class _Version:
    """One loaded version directory: its signatures and its SignatureDefs (saved_model.pb)."""

    def __init__(self, path: str):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        self.signature_defs = proto.meta_graphs[0].signature_def
        self.loaded = tf.saved_model.load(path)

    def run(self, signature_name: str, inputs: dict) -> dict:
        """{input: numpy} -> {output: numpy}; ServingError for a bad signature or input."""
        import tensorflow as tf

        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signature_defs or name not in self.loaded.signatures:
            raise _invalid(f'Serving signature name: "{name}" not found in signature def')
        expected = self.signature_defs[name].inputs
        if set(inputs) != set(expected):
            raise _invalid(f"input names {sorted(inputs)} do not match the signature's "
                           f"{sorted(expected)}")
        feeds = {}
        for key, value in inputs.items():
            dtype = tf.dtypes.as_dtype(expected[key].dtype)
            try:
                feeds[key] = tf.constant(value, dtype)
            except (TypeError, ValueError) as e:
                raise _invalid(f"input {key}: not a {dtype.name} tensor: {e}") from None
        try:
            out = self.loaded.signatures[name](**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            # The op's message as the C++ runtime gives it, without eager's preamble.
            lines = [line for line in getattr(e, "message", str(e)).splitlines()
                     if line.strip() and not line.startswith(
                         ("Graph execution error", "Detected at node", "<stack traces"))]
            raise _invalid(" ".join(" ".join(lines).split())) from None
        return {k: v.numpy() for k, v in out.items()}


class _Model:
    def __init__(self, name: str, base_path: str, num_versions: int):
        self.name = name
        found = sorted((int(d) for d in os.listdir(base_path)
                        if d.isdigit()
                        and os.path.isfile(os.path.join(base_path, d, "saved_model.pb"))),
                       reverse=True)[:num_versions]
        if not found:
            raise FileNotFoundError(f"{base_path}: no numeric version directory with "
                                    f"saved_model.pb")
        self.versions = {v: _Version(os.path.join(base_path, str(v))) for v in found}

    def get(self, version: int | None) -> tuple[int, _Version]:
        v = max(self.versions) if not version else version
        if v not in self.versions:
            raise ServingError("NOT_FOUND", f"Servable not found for request: "
                                            f"Specific({self.name}, {version})")
        return v, self.versions[v]


# ---- JSON <-> tensors (util/json_tensor.cc) ----

def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _strings(value):
    """JSON strings / {"b64"} objects (nested lists) -> bytes."""
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as e:
            raise _invalid(f"Unable to base64 decode: {e}") from None
    if isinstance(value, str):
        return value.encode()
    raise _invalid(f"expected a string or a b64 object, got {type(value).__name__}")


def _from_json(value, dtype_enum: int):
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(dtype_enum)
    if dtype == tf.string:
        return np.array(_strings(value), dtype=object)
    try:
        array = np.array(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise _invalid(f"a {dtype.name} tensor of uniform shape was expected: {e}") from None
    return array


def _to_json(name: str, array: np.ndarray):
    if array.dtype == object or array.dtype.kind == "S":
        as_bytes = name.endswith("_bytes")
        flat = [{"b64": base64.b64encode(b).decode()} if as_bytes else b.decode()
                for b in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def predict_json(version: _Version, body: dict) -> dict:
    """A REST `:predict` body -> the response body (see module doc)."""
    if not isinstance(body, dict):
        raise _invalid("JSON Value: Is not object")
    signature = body.get("signature_name", "") or DEFAULT_SIGNATURE
    if signature not in version.signature_defs:
        raise _invalid(f'Serving signature name: "{signature}" not found in signature def')
    infos = version.signature_defs[signature].inputs
    if ("instances" in body) == ("inputs" in body):
        raise _invalid("Missing 'inputs' or 'instances' key" if "inputs" not in body else
                       "Not formatted correctly expecting only one of 'inputs' or "
                       "'instances' keys to exist")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise _invalid("'instances' must be a non-empty list")
        objects = isinstance(rows[0], dict) and not _is_b64(rows[0])
        if not objects and len(infos) > 1:
            raise _invalid("instances is a plain list, but expecting list of objects as "
                           "multiple input tensors required as per tensorinfo_map")
        if objects:
            for i, row in enumerate(rows):
                if not isinstance(row, dict) or set(row) != set(infos):
                    raise _invalid(f"Failed to process element: {i} of 'instances' list. "
                                   f"keys must be equal to: {','.join(sorted(infos))}")
            columns = {k: [row[k] for row in rows] for k in infos}
        else:
            columns = {next(iter(infos)): rows}
    else:
        value = body["inputs"]
        if isinstance(value, dict) and not _is_b64(value):
            missing = set(infos) - set(value)
            if missing:
                raise _invalid(f"Missing named input: {min(missing)} in 'inputs' object.")
            columns = {k: value[k] for k in infos}
        else:
            if len(infos) > 1:
                raise _invalid("inputs is a plain value/list, but expecting an object as "
                               "multiple input tensors required as per tensorinfo_map")
            columns = {next(iter(infos)): value}
    out = version.run(signature, {k: _from_json(v, infos[k].dtype)
                                  for k, v in columns.items()})
    if "inputs" in body:
        outputs = {k: _to_json(k, v) for k, v in out.items()}
        return {"outputs": outputs if len(outputs) > 1 else next(iter(outputs.values()))}
    batch = {v.shape[0] for v in out.values()}
    if len(batch) != 1:
        raise _invalid(f"outputs have inconsistent batch sizes {sorted(batch)}")
    rows = [{k: _to_json(k, v[i]) for k, v in out.items()} for i in range(batch.pop())]
    return {"predictions": rows if len(out) > 1 else [next(iter(r.values())) for r in rows]}


def _metadata(model: _Model, version: int | None):
    """GetModelMetadataResponse proto for `model` (signature_def only)."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    v, loaded = model.get(version)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model.name
    response.model_spec.version.value = v
    defs = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in loaded.signature_defs.items():
        defs.signature_def[key].CopyFrom(sig)
    response.metadata["signature_def"].Pack(defs)
    return response, defs


class StandIn:
    """Both servers over `models` ({name: (base_path, num_versions)}); see the module doc."""

    def __init__(self, models: dict, *, lifetime_s: float = 300.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.models = {name: _Model(name, path, n) for name, (path, n) in models.items()}
        self._http = ThreadingHTTPServer((HOST, 0), _rest_handler(self))
        self._http.daemon_threads = True
        self.rest_url = f"http://{HOST}:{self._http.server_address[1]}"
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
            ("grpc.max_receive_message_length", 1 << 30),
            ("grpc.max_send_message_length", 1 << 30)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _servicer(self), self._grpc)
        self.grpc_target = f"{HOST}:{self._grpc.add_insecure_port(f'{HOST}:0')}"
        self._grpc.start()
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        self._stopped = False

    @classmethod
    def from_config(cls, config_file: str, mounts: dict, **kwargs) -> StandIn:
        """From a TF Serving `--model_config_file`; `mounts` maps a container folder (a
        `base_path` prefix, e.g. "/models") to a local folder."""
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        config = model_server_config_pb2.ModelServerConfig()
        with open(config_file) as f:
            text_format.Parse(f.read(), config)
        models = {}
        for entry in config.model_config_list.config:
            if entry.model_platform != "tensorflow":
                raise ValueError(f"{config_file}: {entry.name}: platform "
                                 f"{entry.model_platform!r}")
            policy = entry.model_version_policy
            if policy.WhichOneof("policy_choice") not in (None, "latest"):
                raise ValueError(f"{config_file}: only the `latest` version policy is served")
            path = entry.base_path
            for inside, local in mounts.items():
                if path == inside or path.startswith(inside.rstrip("/") + "/"):
                    path = os.path.join(local, os.path.relpath(path, inside))
                    break
            else:
                raise ValueError(f"{config_file}: base_path {path} is under no mount")
            models[entry.name] = (path, policy.latest.num_versions or 1)
        return cls(models, **kwargs)

    def model(self, name: str) -> _Model:
        if name not in self.models:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        return self.models[name]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._timer.cancel()
        self._grpc.stop(0)
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _rest_handler(server: StandIn):
    from google.protobuf import json_format

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _reply(self, code: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, fn):
            try:
                self._reply(200, fn())
            except ServingError as e:
                self._reply(404 if e.code == "NOT_FOUND" else 400, {"error": str(e)})

        def do_GET(self):
            match = _STATUS.fullmatch(self.path)

            def answer():
                if not match or not match.group(1):
                    raise ServingError("NOT_FOUND", f"Malformed request: GET {self.path}")
                model = server.model(match.group(1))
                version = int(match.group(2)) if match.group(2) else None
                if match.group(3):
                    response, defs = _metadata(model, version)
                    fields = {"preserving_proto_field_name": True}
                    return {"model_spec": json_format.MessageToDict(response.model_spec,
                                                                    **fields),
                            "metadata": {"signature_def": json_format.MessageToDict(
                                defs, **fields)}}
                versions = [model.get(version)[0]] if version else sorted(model.versions)
                return {"model_version_status": [
                    {"version": str(v), "state": "AVAILABLE",
                     "status": {"error_code": "OK", "error_message": ""}} for v in versions]}

            self._handle(answer)

        def do_POST(self):
            match = _PREDICT.fullmatch(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)

            def answer():
                if not match or match.group(3).lower() != "predict":
                    raise ServingError("NOT_FOUND", f"Malformed request: POST {self.path}")
                _, version = server.model(match.group(1)).get(
                    int(match.group(2)) if match.group(2) else None)
                try:
                    body = json.loads(raw)
                except ValueError as e:
                    raise _invalid(f"JSON Parse error: {e}") from None
                return predict_json(version, body)

            self._handle(answer)

    return Handler


def _servicer(server: StandIn):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def _call(self, context, fn):
            try:
                return fn()
            except ServingError as e:
                context.abort(getattr(grpc.StatusCode, e.code), str(e))

        def Predict(self, request, context):
            def answer():
                spec = request.model_spec
                v, version = server.model(spec.name).get(
                    spec.version.value if spec.HasField("version") else None)
                out = version.run(spec.signature_name, {
                    k: tf.make_ndarray(t) for k, t in request.inputs.items()})
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = v
                response.model_spec.signature_name = spec.signature_name or DEFAULT_SIGNATURE
                for k, value in out.items():
                    response.outputs[k].CopyFrom(tf.make_tensor_proto(value))
                return response

            return self._call(context, answer)

        def GetModelMetadata(self, request, context):
            def answer():
                if list(request.metadata_field) != ["signature_def"]:
                    raise _invalid("Metadata field signature_def is the only one supported")
                spec = request.model_spec
                return _metadata(server.model(spec.name),
                                 spec.version.value if spec.HasField("version") else None)[0]

            return self._call(context, answer)

    return Servicer()


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_config_file", required=True)
    parser.add_argument("--mount", action="append", default=[],
                        help="CONTAINER_DIR=LOCAL_DIR, as docker run -v (repeatable)")
    parser.add_argument("--lifetime_s", type=float, default=600.0)
    args = parser.parse_args()
    mounts = dict(m.split("=", 1) for m in args.mount)
    with StandIn.from_config(args.model_config_file, mounts, lifetime_s=args.lifetime_s) as s:
        print(f"REST {s.rest_url}  gRPC {s.grpc_target}  (stops in {args.lifetime_s:.0f} s)",
              flush=True)
        deadline = time.monotonic() + args.lifetime_s
        while not s._stopped and time.monotonic() < deadline:
            time.sleep(0.5)
