/**
 * The subset of `onnx/onnx.proto` (field numbers as upstream) needed to read a backbone, add an
 * output, and write a classifier: ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto,
 * TypeProto, AttributeProto, OperatorSetIdProto, via protobufjs reflection (no code generation).
 * Fields outside this subset are dropped when a model is decoded and re-encoded.
 */
import protobuf from 'protobufjs';

const ONNX_SCHEMA = `
syntax = "proto2";
package onnx;
message AttributeProto {
  enum AttributeType { UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5;
    FLOATS = 6; INTS = 7; STRINGS = 8; TENSORS = 9; GRAPHS = 10; SPARSE_TENSOR = 11;
    SPARSE_TENSORS = 12; TYPE_PROTO = 13; TYPE_PROTOS = 14; }
  optional string name = 1;
  optional string ref_attr_name = 21;
  optional string doc_string = 13;
  optional AttributeType type = 20;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  optional GraphProto g = 6;
  optional SparseTensorProto sparse_tensor = 22;
  optional TypeProto tp = 14;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
  repeated SparseTensorProto sparse_tensors = 23;
  repeated TypeProto type_protos = 15;
}
message ValueInfoProto {
  optional string name = 1;
  optional TypeProto type = 2;
  optional string doc_string = 3;
  repeated StringStringEntryProto metadata_props = 4;
}
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  optional string domain = 7;
  optional string overload = 8;
  repeated AttributeProto attribute = 5;
  optional string doc_string = 6;
  repeated StringStringEntryProto metadata_props = 9;
}
message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string domain = 4;
  optional int64 model_version = 5;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}
message StringStringEntryProto {
  optional string key = 1;
  optional string value = 2;
}
message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  repeated SparseTensorProto sparse_initializer = 15;
  optional string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
  repeated StringStringEntryProto metadata_props = 16;
}
message TensorProto {
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  optional string name = 8;
  optional string doc_string = 12;
  optional bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  optional int32 data_location = 14;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
}
message SparseTensorProto {
  optional TensorProto values = 1;
  optional TensorProto indices = 2;
  repeated int64 dims = 3;
}
message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    optional string denotation = 3;
  }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor {
    optional int32 elem_type = 1;
    optional TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  optional string denotation = 6;
}
message OperatorSetIdProto {
  optional string domain = 1;
  optional int64 version = 2;
}
`;

const root = protobuf.parse(ONNX_SCHEMA, { keepCase: true }).root;
const ModelType = root.lookupType('onnx.ModelProto');

/** TensorProto.DataType values used here. */
export const ONNX_FLOAT = 1;
const ONNX_INT64 = 7;
export const ONNX_FLOAT16 = 10;
/** AttributeProto.AttributeType values used here. */
export const ATTR_INT = 2;

type Int64 = number | { toNumber(): number };

export interface OnnxDimension { dim_value?: Int64; dim_param?: string }
export interface OnnxValueInfo {
  name: string;
  type?: { tensor_type?: { elem_type?: number; shape?: { dim?: OnnxDimension[] } } };
}
export interface OnnxAttribute { name: string; type: number; f?: number; i?: Int64; ints?: Int64[] }
export interface OnnxNode { input: string[]; output: string[]; name?: string; op_type: string; domain?: string; attribute?: OnnxAttribute[] }
export interface OnnxTensor { name: string; dims: Int64[]; data_type: number; raw_data?: Uint8Array; float_data?: number[] }
export interface OnnxGraph {
  node: OnnxNode[];
  name?: string;
  initializer: OnnxTensor[];
  input: OnnxValueInfo[];
  output: OnnxValueInfo[];
  value_info?: OnnxValueInfo[];
}
export interface OnnxModel {
  ir_version: Int64;
  opset_import: { domain?: string; version: Int64 }[];
  producer_name?: string;
  producer_version?: string;
  graph: OnnxGraph;
}

/** Decodes ONNX model bytes; fields outside the schema subset are dropped. */
export function decodeModel(bytes: Uint8Array): OnnxModel {
  return ModelType.toObject(ModelType.decode(bytes), { longs: Number, arrays: true, defaults: false }) as OnnxModel;
}

/** Encodes a model built from plain objects. */
export function encodeModel(model: OnnxModel): Uint8Array {
  return ModelType.encode(ModelType.fromObject(model)).finish();
}

/** Number of an int64 field whichever way protobufjs represented it. */
export function toInt(value: Int64 | undefined): number {
  if (value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

/** A float32 initializer stored as little-endian raw bytes. */
export function floatTensor(name: string, dims: number[], values: Float32Array): OnnxTensor {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return { name, dims, data_type: ONNX_FLOAT, raw_data: bytes };
}

/** An int64 initializer (shapes for Reshape). */
export function int64Tensor(name: string, values: number[]): OnnxTensor {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setBigInt64(i * 8, BigInt(values[i]), true);
  return { name, dims: [values.length], data_type: ONNX_INT64, raw_data: bytes };
}

/** A float tensor value-info with named or fixed dimensions. */
export function floatValueInfo(name: string, dims: (number | string)[]): OnnxValueInfo {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: ONNX_FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}
