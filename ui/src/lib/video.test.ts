import { describe, expect, it } from 'vitest';
import { HEADER_LEN, i420ToRgba, parseFrame } from './video';

/** A frame as src-tauri/src/video.rs writes it. */
function wire(width: number, height: number, fill: [number, number, number], seq = 7): ArrayBuffer {
  const luma = width * height;
  const buffer = new ArrayBuffer(HEADER_LEN + luma * 1.5);
  const view = new DataView(buffer);
  view.setUint32(0, width, true);
  view.setUint32(4, height, true);
  view.setUint32(8, seq, true);
  view.setUint32(12, 2, true);
  view.setFloat64(16, 1000.5, true);
  view.setFloat64(24, 1001.25, true);
  const bytes = new Uint8Array(buffer);
  bytes.fill(fill[0], HEADER_LEN, HEADER_LEN + luma);
  bytes.fill(fill[1], HEADER_LEN + luma, HEADER_LEN + luma * 1.25);
  bytes.fill(fill[2], HEADER_LEN + luma * 1.25);
  return buffer;
}

describe('video frames', () => {
  it('parses the header and plane views', () => {
    const frame = parseFrame(wire(4, 2, [16, 128, 128]));
    expect(frame).not.toBeNull();
    expect(frame).toMatchObject({ width: 4, height: 2, seq: 7, dropped: 2, captureMs: 1000.5, readyMs: 1001.25 });
    expect(frame!.y.length).toBe(8);
    expect(frame!.u.length).toBe(2);
    expect(frame!.v.length).toBe(2);
  });

  it('rejects truncated, odd-sized and oversized frames', () => {
    expect(parseFrame(new ArrayBuffer(10))).toBeNull();
    expect(parseFrame(wire(4, 2, [0, 0, 0]).slice(0, HEADER_LEN + 5))).toBeNull();
    const odd = wire(4, 2, [0, 0, 0]);
    new DataView(odd).setUint32(0, 3, true);
    expect(parseFrame(odd)).toBeNull();
    const huge = wire(4, 2, [0, 0, 0]);
    new DataView(huge).setUint32(0, 1 << 20, true);
    expect(parseFrame(huge)).toBeNull();
    const zero = wire(4, 2, [0, 0, 0]);
    new DataView(zero).setUint32(4, 0, true);
    expect(parseFrame(zero)).toBeNull();
  });

  it('converts BT.601 limited range to RGB', () => {
    const rgb = (y: number, u: number, v: number) => {
      const out = new Uint8ClampedArray(2 * 2 * 4);
      i420ToRgba(parseFrame(wire(2, 2, [y, u, v]))!, out);
      return Array.from(out.slice(0, 4));
    };
    expect(rgb(16, 128, 128)).toEqual([0, 0, 0, 255]);
    expect(rgb(235, 128, 128)).toEqual([255, 255, 255, 255]);
    // Pure red in BT.601 limited range is (81, 90, 240).
    const [r, g, b] = rgb(81, 90, 240);
    expect(r).toBeGreaterThan(250);
    expect(g).toBeLessThan(5);
    expect(b).toBeLessThan(5);
  });

});
