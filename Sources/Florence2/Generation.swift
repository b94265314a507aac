// Greedy and beam search over a `GenerationDecoder`, mirroring transformers 5.23's
// `GenerationMixin._sample` (greedy) and `_beam_search` (vectorized beam search), with the logits
// processors Florence-2 uses: no-repeat n-gram, min new tokens, forced BOS, forced EOS.
import Compute
import Foundation

// MARK: - Parameters

/// How to generate, with the meaning of transformers' `GenerationConfig` fields.
public struct GenerationParameters: Sendable, Equatable {
    /// When to stop beam search: `true` stops when `numBeams` hypotheses are finished; `false`
    /// stops when no running beam can beat the worst finished one (at the current length); `never`
    /// uses the best possible length under the length penalty.
    public enum EarlyStopping: Sendable, Equatable { case yes, no, never }

    /// The decoder's first input token (`decoder_start_token_id`, 2 for Florence-2).
    public var decoderStartTokenId: Int32 = 2
    /// End of sequence (`eos_token_id`).
    public var eosTokenId: Int32 = 2
    /// Padding written after a finished sequence (`pad_token_id`).
    public var padTokenId: Int32 = 1
    /// Forced as the first generated token (`forced_bos_token_id`), nil for none.
    public var forcedBosTokenId: Int32? = 0
    /// Forced as the last token at the length limit (`forced_eos_token_id`), nil for none.
    public var forcedEosTokenId: Int32? = 2
    /// Beams; 1 is greedy search.
    public var numBeams = 3
    /// Bans any n-gram of this size from repeating (0: off).
    public var noRepeatNgramSize = 3
    /// Generated tokens at most (the sequence, start token included, is at most this + 1 long).
    public var maxNewTokens = 20
    /// EOS is banned until this many tokens are generated.
    public var minNewTokens = 0
    /// `early_stopping`.
    public var earlyStopping: EarlyStopping = .yes
    /// `length_penalty`: finished scores are divided by (generated length)^penalty.
    public var lengthPenalty: Float = 1

    /// Florence-2's defaults (`generation_config.json`), with `maxNewTokens` new tokens.
    public init(maxNewTokens: Int = 20) { self.maxNewTokens = maxNewTokens }

    /// The defaults overridden by what `config` states (absent keys keep transformers' defaults).
    public init(config: Florence2GenerationConfig, maxNewTokens: Int) {
        self.maxNewTokens = maxNewTokens
        if let v = config.decoderStartTokenId { decoderStartTokenId = Int32(v) }
        if let v = config.eosTokenId { eosTokenId = Int32(v) }
        if let v = config.padTokenId { padTokenId = Int32(v) }
        forcedBosTokenId = config.forcedBosTokenId.map(Int32.init)
        forcedEosTokenId = config.forcedEosTokenId.map(Int32.init)
        numBeams = config.numBeams ?? 1
        noRepeatNgramSize = config.noRepeatNgramSize ?? 0
        if let v = config.earlyStopping { earlyStopping = v ? .yes : .no } else { earlyStopping = .no }
        if let v = config.lengthPenalty { lengthPenalty = v }
    }

    /// `max_length` as transformers computes it from `max_new_tokens` (decoder prompt of 1 token).
    public var maxLength: Int { maxNewTokens + 1 }
}

/// A generation that cannot run.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    /// The request exceeds what the decoder was planned for.
    case exceedsPlan(String)

    public var description: String {
        switch self {
        case let .exceedsPlan(why): return "generation exceeds the memory plan: \(why)"
        }
    }
}

// MARK: - Generator

/// Runs greedy or beam search. Every buffer is allocated once, for the largest request the
/// decoder was planned for; a generation allocates nothing but its returned array.
public final class Generator {
    private let decoder: any GenerationDecoder
    private let vocab: Int
    private let maxBeams: Int
    private let maxLength: Int
    private let logits: Tensor
    private let keepMax: Int

    // Running hypotheses: token rows of `maxLength`, their lengths are all `curLen`.
    private var running: [Int32]
    private var runningScores: [Float]
    // Top-K candidates of a step.
    private var candScore: [Float]
    private var candBeam: [Int]
    private var candToken: [Int32]
    private var candHits: [Bool]
    // Finished hypotheses (num_beams slots) and their lengths.
    private var finished: [Int32]
    private var finishedLength: [Int]
    private var finishedScore: [Float]
    private var finishedFlag: [Bool]
    // Scratch.
    private var nextRunning: [Int32]
    private var stepTokens: [Int32]
    private var reorderSource: [Int]
    private var rowLogProbs: [Float]
    private var order: [Int]
    private var mergedScore: [Float]
    private var stagedScore: [Float]
    private var stagedLength: [Int]
    private var stagedFlag: [Bool]

    /// Called after every decoder step (a caller's progress report or cancellation: a throw ends
    /// the generation with that error). Calling it allocates nothing.
    public var onStep: (() throws -> Void)?

    /// A generator over `decoder`, whose `logits` buffer holds `[maxRows, vocabSize]` floats.
    public init(decoder: any GenerationDecoder, logits: Tensor) {
        self.decoder = decoder
        vocab = decoder.vocabSize
        maxBeams = decoder.maxRows
        maxLength = decoder.maxPositions
        precondition(logits.count >= maxBeams * vocab, "logits buffer \(logits.shape) is smaller than [\(maxBeams), \(vocab)]")
        self.logits = logits
        keepMax = 2 * maxBeams
        precondition(maxBeams <= 21, "beam bookkeeping uses a 64-bit mask: at most 21 beams")
        running = [Int32](repeating: 0, count: keepMax * maxLength)
        nextRunning = running
        runningScores = [Float](repeating: 0, count: maxBeams)
        candScore = [Float](repeating: 0, count: keepMax)
        candBeam = [Int](repeating: 0, count: keepMax)
        candToken = [Int32](repeating: 0, count: keepMax)
        candHits = [Bool](repeating: false, count: keepMax)
        finished = [Int32](repeating: 0, count: maxBeams * maxLength)
        finishedLength = [Int](repeating: 0, count: maxBeams)
        finishedScore = [Float](repeating: 0, count: maxBeams)
        finishedFlag = [Bool](repeating: false, count: maxBeams)
        stepTokens = [Int32](repeating: 0, count: maxBeams)
        reorderSource = [Int](repeating: 0, count: maxBeams)
        rowLogProbs = [Float](repeating: 0, count: vocab)
        order = [Int](repeating: 0, count: maxBeams)
        mergedScore = [Float](repeating: 0, count: 2 * maxBeams)
        stagedScore = [Float](repeating: 0, count: maxBeams)
        stagedLength = [Int](repeating: 0, count: maxBeams)
        stagedFlag = [Bool](repeating: false, count: maxBeams)
        stepTokens.removeAll(keepingCapacity: true)
        reorderSource.removeAll(keepingCapacity: true)
    }

    /// Generates from the decoder's current encoder output; returns the sequence as transformers'
    /// `generate` does (the decoder start token first, `</s>` last unless the limit cut it).
    public func generate(_ p: GenerationParameters) throws -> [Int32] {
        guard p.numBeams >= 1, p.numBeams <= maxBeams else {
            throw GenerationError.exceedsPlan("\(p.numBeams) beams, planned for \(maxBeams)")
        }
        guard p.maxLength <= maxLength else {
            throw GenerationError.exceedsPlan("\(p.maxNewTokens) new tokens, planned for \(maxLength - 1)")
        }
        return p.numBeams == 1 ? try greedy(p) : try beam(p)
    }

    // MARK: - Greedy (transformers `_sample` without sampling)

    private func greedy(_ p: GenerationParameters) throws -> [Int32] {
        try decoder.start(rows: 1)
        var seq: [Int32] = []  // the one allocation of a greedy generation: its result
        seq.reserveCapacity(p.maxLength)
        seq.append(p.decoderStartTokenId)
        while seq.count < p.maxLength {
            stepTokens.removeAll(keepingCapacity: true)
            stepTokens.append(seq[seq.count - 1])
            try decoder.step(tokens: stepTokens, logits: logits)
            try onStep?()
            for v in 0..<vocab { rowLogProbs[v] = logits[v] }
            applyProcessors(&rowLogProbs, sequence: seq, offset: 0, length: seq.count, p)
            var best = 0
            var bestScore = rowLogProbs[0]
            for v in 1..<vocab where rowLogProbs[v] > bestScore { best = v; bestScore = rowLogProbs[v] }
            seq.append(Int32(best))
            if Int32(best) == p.eosTokenId { break }
        }
        return seq
    }

    // MARK: - Beam search (transformers `_beam_search`)

    private func beam(_ p: GenerationParameters) throws -> [Int32] {
        let beams = p.numBeams
        let keep = 2 * beams  // max(2, 1 + n_eos) · num_beams with one EOS id
        let L = maxLength
        let promptLen = 1
        var curLen = promptLen
        for b in 0..<beams {
            running[b * L] = p.decoderStartTokenId
            runningScores[b] = b == 0 ? 0 : -1e9
            finishedScore[b] = -1e9
            finishedFlag[b] = false
            finishedLength[b] = 0
        }
        var heuristicUnsatisfied = true
        try decoder.start(rows: beams)
        while true {
            stepTokens.removeAll(keepingCapacity: true)
            for b in 0..<beams { stepTokens.append(running[b * L + curLen - 1]) }
            try decoder.step(tokens: stepTokens, logits: logits)
            try onStep?()

            // Accumulated log-probs of every (beam, token); keep the top `keep` (descending).
            var n = 0
            for b in 0..<beams {
                logSoftmaxRow(b)
                applyProcessors(&rowLogProbs, sequence: running, offset: b * L, length: curLen, p)
                let base = runningScores[b]
                for v in 0..<vocab {
                    let s = rowLogProbs[v] + base
                    if n < keep {
                        insertCandidate(at: n, count: n, score: s, beam: b, token: Int32(v))
                        n += 1
                    } else if s > candScore[keep - 1] {
                        insertCandidate(at: keep - 1, count: keep - 1, score: s, beam: b, token: Int32(v))
                    }
                }
            }
            // Stopping criteria on each candidate: EOS, or the length limit reached.
            for i in 0..<keep { candHits[i] = candToken[i] == p.eosTokenId || curLen + 1 >= p.maxLength }

            // Finished hypotheses: only the first `beams` candidates may finish.
            let allFinished = allTrue(finishedFlag, beams)
            let penalty = Float(pow(Double(curLen + 1 - promptLen), Double(p.lengthPenalty)))
            for i in 0..<keep {
                var s = candScore[i] / penalty
                if allFinished && p.earlyStopping == .yes { s += -1e9 }
                if !heuristicUnsatisfied { s += -1e9 }
                if !(candHits[i] && i < beams) { s += -1e9 }
                mergedScore[i] = s
            }
            mergeFinished(beams: beams, keep: keep, curLen: curLen)

            // Next running beams: the best `beams` candidates that did not stop (the list is
            // sorted, so stopped ones, pushed down by -1e9, come last in order).
            reorderSource.removeAll(keepingCapacity: true)
            var picked = 0
            for pass in 0..<2 where picked < beams {
                for i in 0..<keep where picked < beams && candHits[i] == (pass == 1) {
                    let src = candBeam[i]
                    for t in 0..<curLen { nextRunning[picked * L + t] = running[src * L + t] }
                    nextRunning[picked * L + curLen] = candToken[i]
                    runningScores[picked] = candScore[i] + (candHits[i] ? -1e9 : 0)
                    reorderSource.append(src)
                    picked += 1
                }
            }
            swap(&running, &nextRunning)
            try decoder.reorder(reorderSource)
            curLen += 1

            // Early-stop heuristic and loop condition.
            let bestLen = (p.earlyStopping == .never && p.lengthPenalty > 0) ? p.maxLength - promptLen : curLen - promptLen
            let bestRunning = runningScores[0] / Float(pow(Double(bestLen), Double(p.lengthPenalty)))
            var minFinished = finishedScore[0]
            for j in 1..<beams { minFinished = min(minFinished, finishedScore[j]) }
            var improvable = false
            for j in 0..<beams {
                let worst: Float = finishedFlag[j] ? minFinished : -1e9
                if bestRunning > worst { improvable = true }
            }
            heuristicUnsatisfied = heuristicUnsatisfied && improvable
            let everyFinished = allTrue(finishedFlag, beams)
            let openBeam = !(everyFinished && p.earlyStopping == .yes)
            let validContinuations = !allTrue(candHits, keep)
            if !(heuristicUnsatisfied && openBeam && validContinuations) { break }
        }
        // The best finished hypothesis (slot 0 after merging), as long as it was generated.
        let len = finishedLength[0]
        return Array(finished[0..<len])
    }

    /// Whether the first `n` flags are all set (a plain loop: closures allocate in debug builds).
    private func allTrue(_ flags: [Bool], _ n: Int) -> Bool {
        for i in 0..<n where !flags[i] { return false }
        return true
    }

    /// Inserts a candidate into the descending top list at its sorted place (the list has `count`
    /// valid entries before the insert; entry `at` is dropped when the list is full).
    private func insertCandidate(at slot: Int, count: Int, score: Float, beam: Int, token: Int32) {
        var i = slot
        // Ties keep the earlier candidate first (lower flat index), like a stable top-k.
        while i > 0 && candScore[i - 1] < score {
            candScore[i] = candScore[i - 1]
            candBeam[i] = candBeam[i - 1]
            candToken[i] = candToken[i - 1]
            i -= 1
        }
        candScore[i] = score
        candBeam[i] = beam
        candToken[i] = token
    }

    /// Merges the new finished candidates (`mergedScore[0..<keep]`) with the finished slots and
    /// keeps the best `beams` in descending order (transformers `_update_finished_beams`; ties keep
    /// the earlier entry, old finished slots first).
    private func mergeFinished(beams: Int, keep: Int, curLen: Int) {
        let L = maxLength
        let total = beams + keep
        var used: UInt64 = 0
        for j in 0..<beams {
            var best = -1
            var bestScore = -Float.infinity
            for i in 0..<total where used & (1 << UInt64(i)) == 0 {
                let s = i < beams ? finishedScore[i] : mergedScore[i - beams]
                if best < 0 || s > bestScore { best = i; bestScore = s }
            }
            used |= 1 << UInt64(best)
            order[j] = best
        }
        // Stage the chosen hypotheses in `nextRunning` (old slots may move), then copy back.
        for j in 0..<beams {
            let i = order[j]
            if i < beams {
                for t in 0..<finishedLength[i] { nextRunning[j * L + t] = finished[i * L + t] }
                stagedScore[j] = finishedScore[i]
                stagedLength[j] = finishedLength[i]
                stagedFlag[j] = finishedFlag[i]
            } else {
                let c = i - beams
                let src = candBeam[c]
                for t in 0..<curLen { nextRunning[j * L + t] = running[src * L + t] }
                nextRunning[j * L + curLen] = candToken[c]
                stagedScore[j] = mergedScore[c]
                stagedLength[j] = curLen + 1
                stagedFlag[j] = candHits[c] && c < beams
            }
        }
        for j in 0..<beams {
            for t in 0..<stagedLength[j] { finished[j * L + t] = nextRunning[j * L + t] }
            finishedLength[j] = stagedLength[j]
            finishedScore[j] = stagedScore[j]
            finishedFlag[j] = stagedFlag[j]
        }
    }

    // MARK: - Scores

    /// `rowLogProbs` = log_softmax(logits row `r`), in fp32 like torch.
    private func logSoftmaxRow(_ r: Int) {
        let base = r * vocab
        var m = -Float.infinity
        for v in 0..<vocab { m = max(m, logits[base + v]) }
        var sum: Float = 0
        for v in 0..<vocab { sum += exp(logits[base + v] - m) }
        let lse = m + log(sum)
        for v in 0..<vocab { rowLogProbs[v] = logits[base + v] - lse }
    }

    /// The logits processors, in transformers' order: no-repeat n-gram, min new tokens, forced
    /// BOS, forced EOS. `sequence[offset..<offset+length]` is the hypothesis so far.
    private func applyProcessors(_ scores: inout [Float], sequence: [Int32], offset: Int, length: Int, _ p: GenerationParameters) {
        let n = p.noRepeatNgramSize
        if n > 0 && length >= n {
            // Ban every token that would complete an n-gram already in the sequence.
            if n == 1 {
                for t in 0..<length { scores[Int(sequence[offset + t])] = -.infinity }
            } else {
                let tail = length - (n - 1)
                for start in 0...(length - n) {
                    var same = true
                    for j in 0..<(n - 1) where sequence[offset + start + j] != sequence[offset + tail + j] { same = false; break }
                    if same { scores[Int(sequence[offset + start + n - 1])] = -.infinity }
                }
            }
        }
        if length - 1 < p.minNewTokens { scores[Int(p.eosTokenId)] = -.infinity }
        if let bos = p.forcedBosTokenId, length == 1 {
            for v in 0..<vocab { scores[v] = -.infinity }
            scores[Int(bos)] = 0
        }
        if let eos = p.forcedEosTokenId, length == p.maxLength - 1 {
            for v in 0..<vocab { scores[v] = -.infinity }
            scores[Int(eos)] = 0
        }
    }
}
