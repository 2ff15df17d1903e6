/**
 * Video frames from Rust, drawn on a canvas.
 *
 * The shell serves each stream's newest frame over a loopback WebSocket (see
 * src-tauri/src/video.rs for the wire format, docs/decisions/0007 for why this
 * transport). After drawing a frame the page acknowledges it with the width it shows
 * the stream at; only then is the next one sent, so at most one frame is in flight and
 * a slow page skips frames instead of queueing them.
 */

import type { VideoEndpoint } from './bindings';

export type { VideoEndpoint };

export const HEADER_LEN = 32;

export interface I420 {
  width: number;
  height: number;
  seq: number;
  /** Frames the producer replaced before they were read. */
  dropped: number;
  /** Milliseconds since the Unix epoch. */
  captureMs: number;
  readyMs: number;
  y: Uint8Array;
  u: Uint8Array;
  v: Uint8Array;
}

/** Parses one frame; `null` for anything malformed (never throws). */
export function parseFrame(buffer: ArrayBuffer): I420 | null {
  if (buffer.byteLength < HEADER_LEN) return null;
  const view = new DataView(buffer);
  const width = view.getUint32(0, true);
  const height = view.getUint32(4, true);
  if (width === 0 || height === 0 || width % 2 || height % 2 || width > 7680 || height > 4320) return null;
  const luma = width * height;
  const chroma = luma / 4;
  if (buffer.byteLength !== HEADER_LEN + luma + 2 * chroma) return null;
  return {
    width,
    height,
    seq: view.getUint32(8, true),
    dropped: view.getUint32(12, true),
    captureMs: view.getFloat64(16, true),
    readyMs: view.getFloat64(24, true),
    y: new Uint8Array(buffer, HEADER_LEN, luma),
    u: new Uint8Array(buffer, HEADER_LEN + luma, chroma),
    v: new Uint8Array(buffer, HEADER_LEN + luma + chroma, chroma),
  };
}

/** Draws I420 frames on a canvas, sized to the frame (CSS scales it). */
export interface Renderer {
  readonly kind: 'webgl' | '2d';
  draw(frame: I420): void;
}

const VERTEX = `
attribute vec2 position;
varying vec2 uv;
void main() {
  uv = vec2((position.x + 1.0) * 0.5, (1.0 - position.y) * 0.5);
  gl_Position = vec4(position, 0.0, 1.0);
}`;

// BT.601 limited range, what the H.264 decoder and the cameras' converters produce.
const FRAGMENT = `
precision mediump float;
varying vec2 uv;
uniform sampler2D planeY;
uniform sampler2D planeU;
uniform sampler2D planeV;
void main() {
  float y = 1.1643 * (texture2D(planeY, uv).r - 0.0625);
  float u = texture2D(planeU, uv).r - 0.5;
  float v = texture2D(planeV, uv).r - 0.5;
  gl_FragColor = vec4(y + 1.5958 * v, y - 0.39173 * u - 0.81290 * v, y + 2.017 * u, 1.0);
}`;

class WebGlRenderer implements Renderer {
  readonly kind = 'webgl';
  private textures: WebGLTexture[] = [];
  private size = { width: 0, height: 0 };

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly gl: WebGLRenderingContext,
  ) {
    const program = gl.createProgram();
    if (!program) throw new Error('no WebGL program');
    for (const [type, source] of [
      [gl.VERTEX_SHADER, VERTEX],
      [gl.FRAGMENT_SHADER, FRAGMENT],
    ] as const) {
      const shader = gl.createShader(type);
      if (!shader) throw new Error('no WebGL shader');
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader) ?? 'shader');
      gl.attachShader(program, shader);
    }
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program) ?? 'link');
    gl.useProgram(program);
    const quad = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, quad);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const position = gl.getAttribLocation(program, 'position');
    gl.enableVertexAttribArray(position);
    gl.vertexAttribPointer(position, 2, gl.FLOAT, false, 0, 0);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    ['planeY', 'planeU', 'planeV'].forEach((name, unit) => {
      const texture = gl.createTexture();
      if (!texture) throw new Error('no WebGL texture');
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(gl.TEXTURE_2D, texture);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      gl.uniform1i(gl.getUniformLocation(program, name), unit);
      this.textures.push(texture);
    });
  }

  draw(frame: I420): void {
    const gl = this.gl;
    const resized = frame.width !== this.size.width || frame.height !== this.size.height;
    if (resized) {
      this.canvas.width = frame.width;
      this.canvas.height = frame.height;
      gl.viewport(0, 0, frame.width, frame.height);
      this.size = { width: frame.width, height: frame.height };
    }
    const planes: [Uint8Array, number, number][] = [
      [frame.y, frame.width, frame.height],
      [frame.u, frame.width / 2, frame.height / 2],
      [frame.v, frame.width / 2, frame.height / 2],
    ];
    planes.forEach(([data, width, height], unit) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(gl.TEXTURE_2D, this.textures[unit]);
      if (resized) gl.texImage2D(gl.TEXTURE_2D, 0, gl.LUMINANCE, width, height, 0, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
      else gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, width, height, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
    });
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
  }
}

/** Where WebGL is missing (some virtual displays): the same conversion in JavaScript. */
class CanvasRenderer implements Renderer {
  readonly kind = '2d';
  private image: ImageData | null = null;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly ctx: CanvasRenderingContext2D,
  ) {}

  draw(frame: I420): void {
    if (!this.image || this.image.width !== frame.width || this.image.height !== frame.height) {
      this.canvas.width = frame.width;
      this.canvas.height = frame.height;
      this.image = this.ctx.createImageData(frame.width, frame.height);
    }
    i420ToRgba(frame, this.image.data);
    this.ctx.putImageData(this.image, 0, 0);
  }
}

/** BT.601 limited range to RGBA, the fragment shader's arithmetic. */
export function i420ToRgba(frame: I420, out: Uint8ClampedArray): void {
  const { width, height, y, u, v } = frame;
  const half = width / 2;
  for (let row = 0; row < height; row++) {
    const chromaRow = (row >> 1) * half;
    for (let col = 0; col < width; col++) {
      const l = 1.1643 * (y[row * width + col] - 16);
      const cb = u[chromaRow + (col >> 1)] - 128;
      const cr = v[chromaRow + (col >> 1)] - 128;
      const o = (row * width + col) * 4;
      out[o] = l + 1.5958 * cr;
      out[o + 1] = l - 0.39173 * cb - 0.8129 * cr;
      out[o + 2] = l + 2.017 * cb;
      out[o + 3] = 255;
    }
  }
}

/** A WebGL renderer, or the 2D fallback, or `null` where the canvas gives neither. */
export function createRenderer(canvas: HTMLCanvasElement): Renderer | null {
  const options = { alpha: false, antialias: false, depth: false, stencil: false, preserveDrawingBuffer: true };
  try {
    const gl = canvas.getContext('webgl', options) as WebGLRenderingContext | null;
    if (gl) return new WebGlRenderer(canvas, gl);
  } catch (e) {
    console.warn('WebGL video renderer unavailable:', e);
  }
  const ctx = canvas.getContext('2d');
  return ctx ? new CanvasRenderer(canvas, ctx) : null;
}

/** Wall-clock milliseconds since the Unix epoch, sub-millisecond, comparable with Rust's. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export type Stream = 'remote' | 'local';


/**
 * Draws `stream` on `canvas` until the returned function is called; `onFrame` sees each
 * drawn frame. A lost connection (the shell restarting it, a malformed frame) is
 * re-established with backoff.
 */
export function pullVideo(
  stream: Stream,
  canvas: HTMLCanvasElement,
  endpoint: () => Promise<VideoEndpoint>,
  onFrame?: (frame: I420) => void,
): () => void {
  const renderer = createRenderer(canvas);
  if (!renderer) return () => {};
  let stopped = false;
  let socket: WebSocket | null = null;
  let backoffMs = 100;
  const shownWidth = () => String(Math.max(1, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1))));
  const retry = () => {
    if (stopped) return;
    setTimeout(connect, backoffMs);
    backoffMs = Math.min(backoffMs * 2, 2000);
  };
  async function connect(): Promise<void> {
    let where: VideoEndpoint;
    try {
      where = await endpoint();
    } catch (e) {
      console.warn(`video ${stream}:`, e);
      retry();
      return;
    }
    if (stopped) return;
    const ws = new WebSocket(`${where.url}/${stream}?token=${encodeURIComponent(where.token)}&w=${shownWidth()}`);
    ws.binaryType = 'arraybuffer';
    socket = ws;
    // For devtools and end-to-end tests: where this stream's connection stands.
    canvas.dataset.socket = 'connecting';
    ws.onopen = () => {
      canvas.dataset.socket = 'open';
    };
    ws.onmessage = (message) => {
      const frame = message.data instanceof ArrayBuffer ? parseFrame(message.data) : null;
      if (!frame) {
        console.warn(`video ${stream}: malformed frame`);
        ws.close();
        return;
      }
      try {
        renderer!.draw(frame);
      } catch (e) {
        // A frame that cannot be drawn must not stop the stream: it is acknowledged
        // like any other, and the next one is drawn.
        console.warn(`video ${stream}: frame not drawn:`, e);
        canvas.dataset.drawErrors = String(Number(canvas.dataset.drawErrors ?? 0) + 1);
      }
      canvas.dataset.seq = String(frame.seq);
      backoffMs = 100;
      onFrame?.(frame);
      ws.send(shownWidth());
    };
    ws.onclose = () => {
      canvas.dataset.socket = 'closed';
      if (socket === ws) socket = null;
      retry();
    };
  }
  connect();
  return () => {
    stopped = true;
    socket?.close();
  };
}
