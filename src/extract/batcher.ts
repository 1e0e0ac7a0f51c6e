/** Collects items into fixed-size batches; `take()` hands over a full batch or the remainder. */
export class Batcher<T> {
  private items: T[] = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size <= 0) throw new TypeError(`batch size must be a positive integer, got ${size}`);
  }

  push(item: T): void {
    this.items.push(item);
  }

  get isFull(): boolean {
    return this.items.length >= this.size;
  }

  get length(): number {
    return this.items.length;
  }

  take(): T[] {
    const out = this.items.slice(0, this.size);
    this.items = this.items.slice(this.size);
    return out;
  }
}
