"""Triton's protocol messages, and their JSON form as Triton's HTTP API writes it.

The message classes are built at import from `grpc/proto/grpc_service.pb`, the compiled descriptor set
of `grpc/proto/grpc_service.proto` (Triton's service definition, trimmed to the RPCs served here) and of
the `model_config.proto` it imports (Triton's ModelConfig, whole); `make proto` rebuilds it. Two reasons
for a descriptor instead of generated `*_pb2.py` modules:
- a private pool: `tritonclient.grpc` registers the same `inference.*` names in protobuf's default pool,
  so generated modules of ours would clash with it ("duplicate symbol") in any process that imports both
  (a test, a user's client that also embeds the server); in their own pool they never meet, and on the
  wire they are the same messages (same field numbers, checked against tritonclient by a test);
- no generated code: generated modules pin the protobuf runtime to the generator's version or newer; a
  descriptor is plain data that every protobuf release since 4.21 reads the same way.

The gRPC transport serves these messages (serve/grpc/messages.py). The core builds two of them itself,
so that both transports answer with one content: the model configuration (config.pbtxt read with
protobuf's own text-format parser into ModelConfig, `parse_config`) and the inference statistics; HTTP
sends their `json_form`.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, text_format
from google.protobuf.descriptor import FieldDescriptor

DESCRIPTOR_SET = Path(__file__).parent / "grpc" / "proto" / "grpc_service.pb"
PACKAGE = "inference"

POOL = descriptor_pool.DescriptorPool()
for file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file:
    POOL.Add(file)


def message(name: str) -> type:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


ModelConfig = message("ModelConfig")
ModelStatisticsResponse = message("ModelStatisticsResponse")
WIDE_INTEGERS = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


class ConfigError(ValueError):
    """config.pbtxt is not a valid Triton ModelConfig; the message says where and why (one line)."""


def parse_config(text: str):
    """config.pbtxt → ModelConfig, by protobuf's text-format parser: what Triton itself accepts."""
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"config.pbtxt is not a Triton ModelConfig: {str(exc).splitlines()[0]}") from None


def json_form(value) -> dict:
    """A message as Triton's HTTP API writes it: proto field names, fields at their default value too, and
    64-bit integers as JSON numbers (protobuf's own JSON mapping writes them as strings)."""
    fields = json_format.MessageToDict(
        value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return numbers(fields, value.DESCRIPTOR)


def numbers(fields: dict, descriptor) -> dict:
    """`fields` (a message's dict) with its 64-bit integers, at any depth, turned back into numbers."""
    for field in descriptor.fields:
        if field.name not in fields:
            continue
        value = fields[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            fields[field.name] = {k: element(v, entry) for k, v in value.items()}
        elif isinstance(value, list):  # a repeated field
            fields[field.name] = [element(v, field) for v in value]
        else:
            fields[field.name] = element(value, field)
    return fields


def element(value, field):
    if field.message_type is not None:
        return numbers(value, field.message_type)
    return int(value) if field.type in WIDE_INTEGERS else value
