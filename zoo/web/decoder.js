"use strict";
// The exported model's generative path in plain JavaScript, written by `zoo export-web`:
// z = loc(c) + temperature * scale(c) * noise, then the MLP decoder on [z, c], then the
// likelihood's mean. Kernels arrive as int8 with one scale per tensor and are
// dequantised once; all arithmetic is in doubles. zoo/browser_model.py does the same
// in numpy, which is how export.json's accuracy figures were computed.

const ACTIVATIONS = { // the same formulas as zoo/browser_model.py
  relu: (x) => Math.max(x, 0),
  tanh: Math.tanh,
  elu: (x) => (x > 0 ? x : Math.expm1(x)),
  gelu: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
  softplus: (x) => Math.log1p(Math.exp(-Math.abs(x))) + Math.max(x, 0),
  swish: (x) => x / (1 + Math.exp(-x)),
};
const MEANS = { sigmoid: (p) => 1 / (1 + Math.exp(-p)), identity: (p) => p };

function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function loadArray(buffer, spec) {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  const values = new Float64Array(count);
  if (spec.dtype === "int8") {
    const stored = new Int8Array(buffer, spec.offset, count);
    for (let i = 0; i < count; i++) values[i] = stored[i] * spec.scale;
  } else {
    const stored = new Float32Array(buffer, spec.offset, count);
    for (let i = 0; i < count; i++) values[i] = stored[i];
  }
  return values;
}

function loadDense(buffer, spec) {
  return { kernel: loadArray(buffer, spec.kernel), bias: loadArray(buffer, spec.bias),
           inputs: spec.kernel.shape[0], outputs: spec.kernel.shape[1] };
}

// y = x @ kernel + bias, kernel stored row-major (inputs, outputs).
function applyDense(layer, x) {
  const y = Float64Array.from(layer.bias);
  for (let i = 0; i < layer.inputs; i++) {
    const xi = x[i];
    if (xi === 0) continue;
    const row = i * layer.outputs;
    for (let j = 0; j < layer.outputs; j++) y[j] += xi * layer.kernel[row + j];
  }
  return y;
}

function loadNetwork(buffer, tensors, spec) {
  const load = (name) => loadDense(buffer, tensors[name]);
  const heads = {};
  for (const [name, tensor] of Object.entries(spec.heads)) heads[name] = load(tensor);
  return { layers: spec.layers.map(load), activation: ACTIVATIONS[spec.activation], heads };
}

function runNetwork(network, input) {
  let h = input;
  for (const layer of network.layers) h = applyDense(layer, h).map(network.activation);
  const out = {};
  for (const [name, head] of Object.entries(network.heads)) out[name] = applyDense(head, h);
  return out;
}

// A small seeded generator (mulberry32) and Box-Muller normals: one stream per row.
function uniforms(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normals(seed, count) {
  const next = uniforms(seed);
  const values = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - next()));
    const angle = 2 * Math.PI * next();
    values[i] = radius * Math.cos(angle);
    if (i + 1 < count) values[i + 1] = radius * Math.sin(angle);
  }
  return values;
}

class ZooBrowserBackend {
  constructor(model, weights) {
    const buffer = decodeBase64(weights);
    this.model = model;
    this.decoder = loadNetwork(buffer, model.tensors, model.decoder);
    this.prior = model.prior && loadNetwork(buffer, model.tensors, model.prior);
    this.mean = MEANS[model.mean];
  }

  describe() { return "running in your browser from int8 weights, no server"; }
  async info() { return this.model; }

  // The mean image of p(x | z, c) for one z (and one-hot c, or null).
  decode(z, c) {
    const input = c ? Float64Array.from([...z, ...c]) : Float64Array.from(z);
    const out = runNetwork(this.decoder, input).out;
    const step = this.model.params_per_dim;
    return Array.from({ length: out.length / step }, (_, i) => this.mean(out[i * step]));
  }

  draw(c, temperature, seed) {
    const noise = normals(seed, this.model.latent_dim);
    let loc = new Float64Array(noise.length);
    let scale = new Float64Array(noise.length).fill(1);
    if (this.prior) {
      const heads = runNetwork(this.prior, c);
      loc = heads.loc;
      const fixed = this.model.prior.fixed_scale;
      scale = heads.log_scale.map((s) => (fixed === null ? Math.exp(s) : fixed));
    }
    return this.decode(noise.map((n, i) => loc[i] + temperature * scale[i] * n), c);
  }

  // The typed line (writing.js: the server's rules), a fresh draw per class; limits as the server's.
  async sample(text, temperature, seed) {
    const { kind, class_names: names, max_input_length: most, max_text_chars: chars } = this.model;
    if (kind !== "conditional") throw new Error("this model is unconditional");
    const length = Array.from(text).length; // code points, as Python counts
    if (length > chars) throw new Error(`the text is ${length} characters; at most ${chars}`);
    const layout = window.ZooWriting.layout(text, this.model);
    const classes = layout.filter((token) => token !== null);
    if (classes.length > most) throw new Error(`${classes.length} classes asked for; at most ${most} at a time`);
    const size = this.model.condition_size;
    const images = classes.map((label, row) => {
      const c = Float64Array.from({ length: size }, (_, k) => (k === label ? 1 : 0));
      return this.draw(c, temperature, (seed + 7919 * row) >>> 0);
    });
    return { shape: this.model.image_shape, labels: classes.map((k) => names[k]), images, layout };
  }

  async grid(temperature, seed) {
    const count = this.model.grid_side ** 2;
    const images = Array.from({ length: count }, (_, row) => this.draw(null, temperature, (seed + 7919 * row) >>> 0));
    return { shape: this.model.image_shape, labels: [], images };
  }

  async walk() {
    const { centre, directions, spread } = this.model.walk;
    const side = this.model.walk_side;
    const reach = this.model.walk_spread;
    const steps = Array.from({ length: side }, (_, i) => -reach + (2 * reach * i) / (side - 1));
    const images = [];
    for (const b of steps) {
      for (const a of steps) {
        const z = centre.map((m, d) => m + a * spread[0] * directions[0][d] + b * spread[1] * directions[1][d]);
        images.push(this.decode(z, null));
      }
    }
    return { shape: this.model.image_shape, labels: [], images };
  }
}

window.ZooBrowserBackend = ZooBrowserBackend;
