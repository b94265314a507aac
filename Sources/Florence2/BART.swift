// The BART encoder-decoder of Florence-2: mirrors transformers' `BartEncoder` / `BartDecoder`
// (learned positions with offset 2, layernorm_embedding, post-LN layers, exact GELU), with a
// self-attention KV cache per decoder layer and cross-attention K/V computed once per image.
import Compute
import Foundation

// MARK: - Weights

/// Self- or cross-attention projections (`q_proj`, `k_proj`, `v_proj`, `out_proj`).
struct AttentionWeights {
    let q: Linear, k: Linear, v: Linear, o: Linear  // <p>.q/.k/.v/.o [d, d] int8 + bias

    init(file f: GGUFFile, prefix p: String, d: Int) throws {
        q = try f.linear(p + ".q", outFeatures: d, inFeatures: d, bias: true)
        k = try f.linear(p + ".k", outFeatures: d, inFeatures: d, bias: true)
        v = try f.linear(p + ".v", outFeatures: d, inFeatures: d, bias: true)
        o = try f.linear(p + ".o", outFeatures: d, inFeatures: d, bias: true)
    }
}

/// A layer norm's affine parameters.
struct NormWeights {
    let w: Tensor, b: Tensor  // <p>.w, <p>.b [d] f32

    init(file f: GGUFFile, prefix p: String, d: Int) throws {
        w = try f.tensor(p + ".w", shape: Shape(d))
        b = try f.tensor(p + ".b", shape: Shape(d))
    }
}

/// An encoder layer (`BartEncoderLayer`). A class: loops over layers copy a reference only.
final class EncoderLayer {
    let sa: AttentionWeights  // t.enc.{l}.sa
    let saNorm: NormWeights  // t.enc.{l}.sa_ln
    let fc1: Linear  // t.enc.{l}.fc1 [ffn, d]
    let fc2: Linear  // t.enc.{l}.fc2 [d, ffn]
    let ffnNorm: NormWeights  // t.enc.{l}.ffn_ln

    init(sa: AttentionWeights, saNorm: NormWeights, fc1: Linear, fc2: Linear, ffnNorm: NormWeights) {
        self.sa = sa; self.saNorm = saNorm; self.fc1 = fc1; self.fc2 = fc2; self.ffnNorm = ffnNorm
    }
}

/// A decoder layer (`BartDecoderLayer`). A class: loops over layers copy a reference only.
final class DecoderLayer {
    let sa: AttentionWeights  // t.dec.{l}.sa
    let saNorm: NormWeights  // t.dec.{l}.sa_ln
    let ca: AttentionWeights  // t.dec.{l}.ca
    let caNorm: NormWeights  // t.dec.{l}.ca_ln
    let fc1: Linear  // t.dec.{l}.fc1
    let fc2: Linear  // t.dec.{l}.fc2
    let ffnNorm: NormWeights  // t.dec.{l}.ffn_ln

    init(sa: AttentionWeights, saNorm: NormWeights, ca: AttentionWeights, caNorm: NormWeights, fc1: Linear, fc2: Linear,
         ffnNorm: NormWeights) {
        self.sa = sa; self.saNorm = saNorm; self.ca = ca; self.caNorm = caNorm; self.fc1 = fc1; self.fc2 = fc2; self.ffnNorm = ffnNorm
    }
}

// MARK: - Encoder

/// The text encoder over `[image tokens; prompt embeddings]`.
struct TextEncoder {
    let positions: Tensor  // t.enc.pos [max_pos + 2, d] f32
    let embNorm: NormWeights  // t.enc.ln_emb
    let layers: [EncoderLayer]
    let heads: Int
    let d: Int
    let eps: Float

    init(file f: GGUFFile, config: Florence2Config) throws {
        let t = config.text
        d = t.dModel
        heads = t.encoderHeads
        eps = config.layerNormEps
        positions = try f.tensor("t.enc.pos", shape: Shape(t.maxPositionEmbeddings + 2, d))
        embNorm = try NormWeights(file: f, prefix: "t.enc.ln_emb", d: d)
        layers = try (0..<t.encoderLayers).map { l in
            EncoderLayer(sa: try AttentionWeights(file: f, prefix: "t.enc.\(l).sa", d: t.dModel),
                         saNorm: try NormWeights(file: f, prefix: "t.enc.\(l).sa_ln", d: t.dModel),
                         fc1: try f.linear("t.enc.\(l).fc1", outFeatures: t.encoderFFN, inFeatures: t.dModel, bias: true),
                         fc2: try f.linear("t.enc.\(l).fc2", outFeatures: t.dModel, inFeatures: t.encoderFFN, bias: true),
                         ffnNorm: try NormWeights(file: f, prefix: "t.enc.\(l).ffn_ln", d: t.dModel))
        }
    }

    /// Encodes `h` `[L, d]` (input embeddings) in place into the encoder output.
    func forward(_ h: Tensor, arena: Arena, context ctx: ComputeContext, blockTokens: Int, ffn: Int) throws {
        let L = h.shape[0]
        Ops.addInPlace(h, positions.rows(2..<(2 + L)), context: ctx)
        Ops.layerNorm(h, weight: embNorm.w, bias: embNorm.b, eps: eps, into: h, context: ctx)
        let mark = arena.mark()
        defer { arena.reset(to: mark) }
        let q = try arena.tensor(Shape(L, d)), k = try arena.tensor(Shape(L, d)), v = try arena.tensor(Shape(L, d))
        let a = try arena.tensor(Shape(L, d))
        let b = min(blockTokens, L)
        let hidden = try arena.tensor(Shape(b, ffn))
        for l in 0..<layers.count {
            let layer = layers[l]
            try layer.sa.q.forward(h, into: q, context: ctx)
            try layer.sa.k.forward(h, into: k, context: ctx)
            try layer.sa.v.forward(h, into: v, context: ctx)
            try Attention.multiHead(q: q, k: k, v: v, heads: heads, causal: false, out: a, context: ctx)
            try layer.sa.o.forward(a, into: q, context: ctx)
            Ops.addInPlace(h, q, context: ctx)
            Ops.layerNorm(h, weight: layer.saNorm.w, bias: layer.saNorm.b, eps: eps, into: h, context: ctx)
            var r0 = 0
            while r0 < L {
                let m = min(b, L - r0)
                let x = h.rows(r0..<(r0 + m)), hv = hidden.rows(0..<m), o = q.rows(0..<m)
                try layer.fc1.forward(x, into: hv, context: ctx)
                Ops.gelu(hv, context: ctx)
                try layer.fc2.forward(hv, into: o, context: ctx)
                Ops.addInPlace(x, o, context: ctx)
                Ops.layerNorm(x, weight: layer.ffnNorm.w, bias: layer.ffnNorm.b, eps: eps, into: x, context: ctx)
                r0 += m
            }
        }
    }
}

// MARK: - Decoder

/// The text decoder with its caches; one `step` feeds one token per beam.
final class TextDecoder: GenerationDecoder {
    let embed: Linear  // t.embed [V, d] int8, tied: token embeddings and LM head
    let positions: Tensor  // t.dec.pos [max_pos + 2, d] f32
    let embNorm: NormWeights  // t.dec.ln_emb
    let layers: [DecoderLayer]
    let selfKV: [KVCache]
    let crossKV: [CrossKV]
    let heads: Int
    let d: Int
    let ffn: Int
    let eps: Float
    let embedScale: Float
    let vocabSize: Int
    let maxRows: Int
    let maxPositions: Int
    let arena: Arena
    let context: ComputeContext
    private var position = 0

    init(file f: GGUFFile, config: Florence2Config, embed: Linear, limits: Florence2Limits, geometry: Florence2Geometry,
         kvArena: Arena, arena: Arena, context: ComputeContext) throws {
        let t = config.text
        d = t.dModel
        heads = t.decoderHeads
        ffn = t.decoderFFN
        eps = config.layerNormEps
        embedScale = t.scaleEmbedding ? Float(Double(t.dModel).squareRoot()) : 1
        self.embed = embed
        vocabSize = t.vocabSize
        maxRows = limits.numBeams
        maxPositions = geometry.decoderPositions
        positions = try f.tensor("t.dec.pos", shape: Shape(t.maxPositionEmbeddings + 2, d))
        embNorm = try NormWeights(file: f, prefix: "t.dec.ln_emb", d: d)
        layers = try (0..<t.decoderLayers).map { l in
            DecoderLayer(sa: try AttentionWeights(file: f, prefix: "t.dec.\(l).sa", d: t.dModel),
                         saNorm: try NormWeights(file: f, prefix: "t.dec.\(l).sa_ln", d: t.dModel),
                         ca: try AttentionWeights(file: f, prefix: "t.dec.\(l).ca", d: t.dModel),
                         caNorm: try NormWeights(file: f, prefix: "t.dec.\(l).ca_ln", d: t.dModel),
                         fc1: try f.linear("t.dec.\(l).fc1", outFeatures: t.decoderFFN, inFeatures: t.dModel, bias: true),
                         fc2: try f.linear("t.dec.\(l).fc2", outFeatures: t.dModel, inFeatures: t.decoderFFN, bias: true),
                         ffnNorm: try NormWeights(file: f, prefix: "t.dec.\(l).ffn_ln", d: t.dModel))
        }
        selfKV = try (0..<t.decoderLayers).map { _ in try KVCache(rows: limits.numBeams, maxPositions: geometry.decoderPositions, d: t.dModel, arena: kvArena) }
        crossKV = try (0..<t.decoderLayers).map { _ in try CrossKV(maxPositions: geometry.encoderLength, d: t.dModel, arena: kvArena) }
        self.arena = arena
        self.context = context
    }

    /// Computes every layer's cross-attention K/V from the encoder output `[S, d]`.
    func setEncoderOutput(_ enc: Tensor) throws {
        let s = enc.shape[0]
        for l in 0..<layers.count {
            let layer = layers[l]
            crossKV[l].setLength(s)
            try layer.ca.k.forward(enc, into: crossKV[l].keys, context: context)
            try layer.ca.v.forward(enc, into: crossKV[l].values, context: context)
        }
    }

    func start(rows: Int) throws {
        precondition(rows >= 1 && rows <= maxRows, "decoder planned for \(maxRows) rows, asked for \(rows)")
        for l in 0..<selfKV.count { selfKV[l].reset(rows: rows) }
        position = 0
        currentRows = rows
    }

    private var currentRows = 1

    func step(tokens: [Int32], logits: Tensor) throws {
        let r = tokens.count
        precondition(r == currentRows, "step with \(r) tokens for \(currentRows) rows")
        guard position < maxPositions else { throw GenerationError.exceedsPlan("decoder position \(position) of \(maxPositions)") }
        let mark = arena.mark()
        defer { arena.reset(to: mark) }
        let ctx = context
        let x = try arena.tensor(Shape(r, d)), q = try arena.tensor(Shape(r, d)), k = try arena.tensor(Shape(r, d))
        let v = try arena.tensor(Shape(r, d)), a = try arena.tensor(Shape(r, d)), hidden = try arena.tensor(Shape(r, ffn))
        let pos = positions.rows((2 + position)..<(3 + position)).reshaped(Shape(d))
        for i in 0..<r {
            let row = x.rows(i..<(i + 1)).reshaped(Shape(d))
            embed.embeddingRow(Int(tokens[i]), into: row)
            if embedScale != 1 { for j in 0..<d { row[j] *= embedScale } }
        }
        Ops.addRowBroadcast(x, row: pos)
        Ops.layerNorm(x, weight: embNorm.w, bias: embNorm.b, eps: eps, into: x, context: ctx)
        for l in 0..<layers.count {
            let layer = layers[l]
            try layer.sa.q.forward(x, into: q, context: ctx)
            try layer.sa.k.forward(x, into: k, context: ctx)
            try layer.sa.v.forward(x, into: v, context: ctx)
            selfKV[l].append(k: k, v: v)
            try selfKV[l].attend(q: q, heads: heads, out: a, context: ctx)
            try layer.sa.o.forward(a, into: q, context: ctx)
            Ops.addInPlace(x, q, context: ctx)
            Ops.layerNorm(x, weight: layer.saNorm.w, bias: layer.saNorm.b, eps: eps, into: x, context: ctx)
            try layer.ca.q.forward(x, into: q, context: ctx)
            try crossKV[l].attend(q: q, heads: heads, out: a, context: ctx)
            try layer.ca.o.forward(a, into: q, context: ctx)
            Ops.addInPlace(x, q, context: ctx)
            Ops.layerNorm(x, weight: layer.caNorm.w, bias: layer.caNorm.b, eps: eps, into: x, context: ctx)
            try layer.fc1.forward(x, into: hidden, context: ctx)
            Ops.gelu(hidden, context: ctx)
            try layer.fc2.forward(hidden, into: q, context: ctx)
            Ops.addInPlace(x, q, context: ctx)
            Ops.layerNorm(x, weight: layer.ffnNorm.w, bias: layer.ffnNorm.b, eps: eps, into: x, context: ctx)
        }
        try embed.forward(x, into: logits.rows(0..<r), context: ctx)
        position += 1
    }

    func reorder(_ source: [Int]) throws {
        for l in 0..<selfKV.count { try selfKV[l].reorder(source, context: context) }
        currentRows = source.count
    }
}
