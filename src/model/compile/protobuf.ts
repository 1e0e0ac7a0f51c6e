/**
 * A minimal protocol-buffers *writer* (proto3 wire format): just what compile/graph.ts needs to
 * write a TensorFlow GraphDef/SavedModel. Messages are built bottom-up as byte arrays.
 */

const encoder = new TextEncoder();

export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private length = 0;

  private push(bytes: Uint8Array): this {
    this.parts.push(bytes);
    this.length += bytes.length;
    return this;
  }

  private rawVarint(value: number | bigint): this {
    // Negative int64 values are ten-byte two's-complement varints.
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    return this.push(Uint8Array.from(out));
  }

  private tag(field: number, wireType: 0 | 1 | 2 | 5): this {
    return this.rawVarint((field << 3) | wireType);
  }

  /** int32/int64/uint64/bool/enum field. */
  varint(field: number, value: number | bigint | boolean): this {
    return this.tag(field, 0).rawVarint(typeof value === 'boolean' ? (value ? 1 : 0) : value);
  }

  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    return this.tag(field, 5).push(b);
  }

  bytes(field: number, value: Uint8Array): this {
    return this.tag(field, 2).rawVarint(value.length).push(value);
  }

  string(field: number, value: string): this {
    return this.bytes(field, encoder.encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const w = new ProtoWriter();
    build(w);
    return this.bytes(field, w.finish());
  }

  /** Packed repeated int64. */
  packedVarints(field: number, values: readonly number[]): this {
    const w = new ProtoWriter();
    for (const v of values) w.rawVarint(v);
    return this.bytes(field, w.finish());
  }

  /** A `map<string, Message>` entry. */
  mapEntry(field: number, key: string, value: (w: ProtoWriter) => void): this {
    return this.message(field, (e) => e.string(1, key).message(2, value));
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const p of this.parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
  }
}
