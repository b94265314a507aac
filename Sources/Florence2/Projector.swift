// The multimodal projector: mirrors transformers' `Florence2MultiModalProjector` (learned 2-D
// position embedding, cosine temporal embedding at t = 0, spatial mean token, linear, layer norm).
import Compute

/// Vision features `[h, w, C]` → image tokens `[1 + h·w, P]` for the text encoder.
struct Projector {
    let colEmbed: Tensor  // p.col_emb [max_pos, C/2] f32 (column, x, comes first)
    let rowEmbed: Tensor  // p.row_emb [max_pos, C/2] f32
    let proj: Linear  // p.proj [P, C] int8, no bias
    let normW: Tensor, normB: Tensor  // p.ln [P] f32
    let temporal: Tensor  // [C]: the cosine temporal table at t = 0, [0, 1, 0, 1, …]
    let channels: Int
    let eps: Float

    init(file f: GGUFFile, config: Florence2Config, constants: Arena) throws {
        let c = config.vision.embedDims[config.vision.stageCount - 1], p = config.projectionDim
        let maxPos = config.vision.maxPosEmbeddings
        colEmbed = try f.tensor("p.col_emb", shape: Shape(maxPos, c / 2))
        rowEmbed = try f.tensor("p.row_emb", shape: Shape(maxPos, c / 2))
        proj = try f.linear("p.proj", outFeatures: p, inFeatures: c, bias: false)
        normW = try f.tensor("p.ln.w", shape: Shape(p))
        normB = try f.tensor("p.ln.b", shape: Shape(p))
        // pe[t, 2i] = sin(t / 10000^(2i/C)), pe[t, 2i+1] = cos(...): at t = 0, 0 and 1.
        temporal = try constants.tensor(Shape(c))
        for i in 0..<c { temporal[i] = i % 2 == 0 ? 0 : 1 }
        channels = c
        eps = config.layerNormEps
    }

    /// Writes the projected image tokens into `out` `[1 + h·w, P]`; `features` `[h, w, C]` is
    /// modified (positions added). `scratch` holds `[1 + h·w, C]`.
    func forward(_ features: Tensor, into out: Tensor, scratch: Tensor, context ctx: ComputeContext) throws {
        let h = features.shape[0], w = features.shape[1], c = channels, half = c / 2
        // F[i, j, :half] += col[j]; F[i, j, half:] += row[i]
        for i in 0..<h {
            for j in 0..<w {
                let base = (i * w + j) * c
                for k in 0..<half {
                    features[base + k] += colEmbed[j * half + k]
                    features[base + half + k] += rowEmbed[i * half + k]
                }
            }
        }
        let n = h * w
        let tokens = features.reshaped(Shape(n, c))
        Ops.addRowBroadcast(tokens, row: temporal)
        let feats = scratch.rows(0..<(n + 1))
        feats.rows(1..<(n + 1)).copy(from: tokens)
        Ops.meanRows(tokens, into: feats.rows(0..<1).reshaped(Shape(c)))
        try proj.forward(feats, into: out, context: ctx)
        Ops.layerNorm(out, weight: normW, bias: normB, eps: eps, into: out, context: ctx)
    }
}
