// The seam between generation (greedy and beam search) and the BART decoder.
import Compute

/// What greedy and beam search need from a decoder that holds its own self-attention KV cache and
/// the image's cross-attention K/V. Rows are beams; row order is the caller's.
public protocol GenerationDecoder: AnyObject {
    /// Rows of the logits (`vocab_size` of the text config).
    var vocabSize: Int { get }
    /// The most rows (beams) and positions the decoder was planned for.
    var maxRows: Int { get }
    /// The most decoder positions (prompted plus generated) one sequence can hold.
    var maxPositions: Int { get }

    /// Starts `rows` fresh sequences over the current encoder output (clears the self-attention
    /// cache; the cross-attention K/V of the image stay).
    func start(rows: Int) throws

    /// Feeds one token per row (`tokens.count == rows`) at the next position of every row and
    /// writes the next-token logits, `[rows, vocabSize]`, into `logits`.
    func step(tokens: [Int32], logits: Tensor) throws

    /// Reorders the cached rows after a beam step: new row `i` continues old row `source[i]`.
    /// `source.count` may be smaller than the current row count (finished beams drop out).
    func reorder(_ source: [Int]) throws
}
