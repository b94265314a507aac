// Florence-2's answer parsing, as transformers 5.23.0 `Florence2PostProcessor` (parsers) and
// `Florence2Processor.post_process_generation` (result shapes), with the post-processor
// configuration that `convert_florence2_original_pytorch_to_hf.py` writes (banned grounding phrases).
//
// Coordinates: we keep the location bins and their centres in pixels of the original image as
// floats, `(bin + 0.5) · W/1000` (Microsoft's original `BoxQuantizer.dequantize`); v5 truncates
// that product with `.int()` — `Florence2Coordinates.transformersPixels` gives those values.

// MARK: - Results

/// Coordinates decoded from `<loc_N>` tokens: x, y alternating (4 values for a box
/// xmin, ymin, xmax, ymax; 8 for an OCR quadrilateral; 2k for a polygon of k points).
public struct Florence2Coordinates: Codable, Equatable, Sendable {
    /// The location bins, 0…999 for real model output.
    public let bins: [Int]
    /// Bin centres in pixels of the original image: `(bin + 0.5) · W/1000` for x, `· H/1000` for y.
    public let pixels: [Double]

    /// Dequantizes `bins` for an image of `imageWidth` × `imageHeight` pixels.
    public init(bins: [Int], imageWidth: Int, imageHeight: Int) {
        self.bins = bins
        pixels = bins.enumerated().map { k, b in LocationBins.dequantize(b, size: k % 2 == 0 ? imageWidth : imageHeight) }
    }

    /// What transformers 5.23.0 returns for these bins: the float32 centre truncated to an integer.
    public func transformersPixels(imageWidth: Int, imageHeight: Int) -> [Int] {
        bins.enumerated().map { k, b in LocationBins.dequantizeTruncated(b, size: k % 2 == 0 ? imageWidth : imageHeight) }
    }
}

/// A box with its label (a category, a region description, a grounded phrase; empty for a
/// region proposal).
public struct LabelledBox: Codable, Equatable, Sendable {
    /// The label, stripped, non-ASCII characters dropped (as v5 does).
    public let label: String
    /// xmin, ymin, xmax, ymax.
    public let box: Florence2Coordinates
}

/// A text line with its quadrilateral (x1, y1, …, x4, y4).
public struct OCRLine: Codable, Equatable, Sendable {
    /// The line's text, stripped (non-ASCII kept).
    public let text: String
    /// x1, y1, x2, y2, x3, y3, x4, y4.
    public let quad: Florence2Coordinates
}

/// One instance's polygons (split by `<sep>`) with its label (empty for segmentation tasks).
public struct LabelledPolygons: Codable, Equatable, Sendable {
    /// The label, stripped (non-ASCII kept: v5 filters only box labels).
    public let label: String
    /// Each polygon's points, x, y alternating (an odd trailing value is dropped; may be empty).
    public let polygons: [Florence2Coordinates]
}

/// A task's parsed answer, shaped as `post_process_generation` shapes it.
public enum Florence2Output: Equatable, Sendable {
    /// `pure_text`: the text without `<s>`/`</s>`, stripped.
    case text(String)
    /// `description_with_bboxes` (OD, dense region caption), `bboxes` (region proposal) and
    /// `phrase_grounding`: one entry per box, in output order.
    case boxes([LabelledBox])
    /// `ocr` (OCR with region).
    case ocr([OCRLine])
    /// `polygons` (referring expression segmentation, region to segmentation).
    case polygons([LabelledPolygons])
    /// `description_with_bboxes_or_polygons` (open-vocabulary detection): boxes when the answer has
    /// no `<poly>`, polygons when it has.
    case boxesOrPolygons(boxes: [LabelledBox], polygons: [LabelledPolygons])
}

extension Florence2Output: Codable {
    private enum Key: String, CodingKey { case kind, text, boxes, ocr, polygons }

    /// `{"kind": "text"|"boxes"|"ocr"|"polygons"|"boxes_or_polygons", ...}` with the fields of the case.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        switch self {
        case let .text(t): try c.encode("text", forKey: .kind); try c.encode(t, forKey: .text)
        case let .boxes(b): try c.encode("boxes", forKey: .kind); try c.encode(b, forKey: .boxes)
        case let .ocr(o): try c.encode("ocr", forKey: .kind); try c.encode(o, forKey: .ocr)
        case let .polygons(p): try c.encode("polygons", forKey: .kind); try c.encode(p, forKey: .polygons)
        case let .boxesOrPolygons(b, p):
            try c.encode("boxes_or_polygons", forKey: .kind); try c.encode(b, forKey: .boxes); try c.encode(p, forKey: .polygons)
        }
    }

    /// Reads what `encode(to:)` writes.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        switch try c.decode(String.self, forKey: .kind) {
        case "text": self = .text(try c.decode(String.self, forKey: .text))
        case "boxes": self = .boxes(try c.decode([LabelledBox].self, forKey: .boxes))
        case "ocr": self = .ocr(try c.decode([OCRLine].self, forKey: .ocr))
        case "polygons": self = .polygons(try c.decode([LabelledPolygons].self, forKey: .polygons))
        case "boxes_or_polygons":
            self = .boxesOrPolygons(boxes: try c.decode([LabelledBox].self, forKey: .boxes),
                                    polygons: try c.decode([LabelledPolygons].self, forKey: .polygons))
        case let k: throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown result kind '\(k)'")
        }
    }
}

/// A parsed answer with the task and the original image size its pixels refer to.
public struct Florence2Result: Codable, Equatable, Sendable {
    /// The task whose answer this is.
    public let task: Florence2Task
    /// The original image size the pixel coordinates refer to.
    public let imageWidth: Int
    public let imageHeight: Int
    /// The parsed answer.
    public let output: Florence2Output
}

// MARK: - Post-processor

/// Parses generated text into typed results (`Florence2PostProcessor` with the converted
/// checkpoints' configuration). Input is the decoder output decoded with
/// `skipSpecialTokens: false`, e.g. `</s><s>car<loc_52><loc_333><loc_932><loc_774></s>`.
public enum Florence2PostProcessor {
    /// Phrases that phrase grounding drops (`banned_grounding_tokens`, case-sensitive).
    public static let bannedGroundingPhrases: Set<String> = [
        "it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers",
        "they", "them", "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "its",
        "myself", "yourself", "himself", "herself", "itself", "ourselves", "yourselves", "themselves",
        "this", "that", "these", "those", "who", "whom", "whose", "which", "what", "all", "another",
        "any", "anybody", "anyone", "anything", "each", "everybody", "everyone", "everything", "few",
        "many", "nobody", "none", "several", "some", "somebody", "someone", "something", "each other",
        "one another", "the image", "image", "images", "the", "a", "an", "a group", "other objects",
        "lots", "a set",
    ]

    /// The typed answer of `task` for `generated` text, in pixels of an image of
    /// `imageWidth` × `imageHeight` (the original image, before the 768 × 768 resize).
    public static func process(_ generated: String, task: Florence2Task, imageWidth: Int, imageHeight: Int) -> Florence2Result {
        let raw = PyText.scalars(generated)
        let w = imageWidth, h = imageHeight
        let output: Florence2Output
        switch task.resultKind {
        case .pureText:
            let t = PyText.remove(PyText.scalars("</s>"), from: PyText.remove(PyText.scalars("<s>"), from: raw))
            output = .text(PyText.string(PyText.strip(t)))
        case .descriptionWithBBoxes:
            output = .boxes(descriptionWithBBoxes(raw, allowEmptyPhrase: false, w, h))
        case .bboxes:
            output = .boxes(descriptionWithBBoxes(raw, allowEmptyPhrase: true, w, h))
        case .phraseGrounding:
            output = .boxes(phraseGrounding(raw, w, h))
        case .ocr:
            output = .ocr(ocr(raw, w, h))
        case .polygons:
            output = .polygons(descriptionWithPolygons(raw, allowEmptyPhrase: true, w, h))
        case .descriptionWithBBoxesOrPolygons:
            if PyText.contains(raw, LocText.polyStart) {
                output = .boxesOrPolygons(boxes: [], polygons: descriptionWithPolygons(raw, allowEmptyPhrase: false, w, h))
            } else {
                output = .boxesOrPolygons(boxes: descriptionWithBBoxes(raw, allowEmptyPhrase: false, w, h), polygons: [])
            }
        }
        return Florence2Result(task: task, imageWidth: w, imageHeight: h, output: output)
    }

    /// Decodes `ids` (special tokens kept) and parses the text.
    public static func process(ids: [Int32], tokenizer: BPETokenizer, task: Florence2Task, imageWidth: Int, imageHeight: Int) -> Florence2Result {
        process(tokenizer.decode(ids, skipSpecialTokens: false), task: task, imageWidth: imageWidth, imageHeight: imageHeight)
    }

    // MARK: - Parsers (one per `parse_*_from_text_and_spans`)

    /// `<s>`, `</s>` and `<pad>` removed, in that order.
    private static func withoutMarkers(_ s: Scalars) -> Scalars {
        var t = PyText.remove(PyText.scalars("<s>"), from: s)
        t = PyText.remove(PyText.scalars("</s>"), from: t)
        return PyText.remove(PyText.scalars("<pad>"), from: t)
    }

    private static let boxLookaheads = ["<od>", "</od>", "<box>", "</box>", "<bbox>", "</bbox>", "<loc_"].map(PyText.scalars)
    private static let polygonLookaheads = boxLookaheads + [LocText.polyStart]

    /// `parse_description_with_bboxes_from_text_and_spans`: label (stripped, ASCII only) then one
    /// or more boxes of four bins; each box becomes an entry.
    static func descriptionWithBBoxes(_ raw: Scalars, allowEmptyPhrase: Bool, _ w: Int, _ h: Int) -> [LabelledBox] {
        let text = withoutMarkers(raw)
        var out: [LabelledBox] = []
        for r in LocText.phrases(text, allowEmptyPhrase: allowEmptyPhrase, polygonTokens: false) {
            var p = Array(text[r])
            p = PyText.remove(PyText.scalars("<ground>"), from: p, count: 1)
            p = PyText.remove(PyText.scalars("<obj>"), from: p, count: 1)
            if p.isEmpty && !allowEmptyPhrase { continue }
            guard let lead = LocText.leadingPhrase(p, before: boxLookaheads) else { continue }
            let boxes = LocText.boxes(p)
            if boxes.isEmpty { continue }
            let label = PyText.string(PyText.asciiOnly(PyText.strip(lead)))
            for b in boxes { out.append(LabelledBox(label: label, box: Florence2Coordinates(bins: b, imageWidth: w, imageHeight: h))) }
        }
        return out
    }

    /// `parse_phrase_grounding_from_text_and_spans`: as `descriptionWithBBoxes`, dropping banned
    /// phrases (checked before the ASCII filter).
    static func phraseGrounding(_ raw: Scalars, _ w: Int, _ h: Int) -> [LabelledBox] {
        let text = withoutMarkers(raw)
        var out: [LabelledBox] = []
        for r in LocText.phrases(text, allowEmptyPhrase: false, polygonTokens: false) {
            var p = Array(text[r])
            p = PyText.remove(PyText.scalars("<ground>"), from: p, count: 1)
            p = PyText.remove(PyText.scalars("<obj>"), from: p, count: 1)
            if p.isEmpty { continue }
            guard let lead = LocText.leadingPhrase(p, before: boxLookaheads) else { continue }
            let phrase = PyText.strip(lead)
            if bannedGroundingPhrases.contains(PyText.string(phrase)) { continue }
            let boxes = LocText.boxes(p)
            if boxes.isEmpty { continue }
            let label = PyText.string(PyText.asciiOnly(phrase))
            for b in boxes { out.append(LabelledBox(label: label, box: Florence2Coordinates(bins: b, imageWidth: w, imageHeight: h))) }
        }
        return out
    }

    /// `parse_ocr_from_text_and_spans`: `re.findall(r"(.+?)<loc_(\d+)>…×8")`, text stripped; the
    /// area threshold is 0 (the converted config's lower-case key is never read), so nothing is filtered.
    static func ocr(_ raw: Scalars, _ w: Int, _ h: Int) -> [OCRLine] {
        let s = withoutMarkers(raw)
        var out: [OCRLine] = []
        var p = 0
        scan: while p < s.count {
            // (.+?): at least one character, never a newline, as few as possible.
            var e = p + 1
            while e <= s.count && s[e - 1] != "\n" {
                if let (bins, end) = eightLocs(s, at: e) {
                    out.append(OCRLine(text: PyText.string(PyText.strip(Array(s[p..<e]))),
                                       quad: Florence2Coordinates(bins: bins, imageWidth: w, imageHeight: h)))
                    p = end
                    continue scan
                }
                e += 1
            }
            // No match from p; every start up to the newline (or the end) fails the same way.
            p = e
        }
        return out
    }

    private static func eightLocs(_ s: Scalars, at i: Int) -> ([Int], Int)? {
        var j = i, bins: [Int] = []
        while bins.count < 8, let l = LocText.loc(s, at: j) { bins.append(l.bin); j = l.end }
        return bins.count == 8 ? (bins, j) : nil
    }

    /// `parse_description_with_polygons_from_text_and_spans` (no box at start): phrases of
    /// `<loc_N>`/`<sep>`/`<poly>`/`</poly>` runs; each `<poly>…</poly>` (or the whole phrase when
    /// it lacks them) is an instance; its polygons are the `<loc_N>` runs ended by `<sep>` or the end.
    static func descriptionWithPolygons(_ raw: Scalars, allowEmptyPhrase: Bool, _ w: Int, _ h: Int) -> [LabelledPolygons] {
        let text = withoutMarkers(raw)
        var out: [LabelledPolygons] = []
        for r in LocText.phrases(text, allowEmptyPhrase: allowEmptyPhrase, polygonTokens: true) {
            let phraseText = Array(text[r])
            var stripped = phraseText
            if let l = LocText.loc(phraseText, at: 0) { stripped = Array(phraseText[l.end...]) }   // re.sub(r"^<loc_\d+>", "", count=1)
            if stripped.isEmpty && !allowEmptyPhrase { continue }
            guard let lead = LocText.leadingPhrase(stripped, before: polygonLookaheads) else { continue }
            let label = PyText.string(PyText.strip(lead))

            let instances: [Scalars]
            if PyText.contains(phraseText, LocText.polyStart) && PyText.contains(phraseText, LocText.polyEnd) {
                instances = polyInstances(phraseText)
            } else {
                instances = [phraseText]
            }
            for inst in instances {
                let runs = polygonRuns(inst)
                if runs.isEmpty { continue }
                let polygons = runs.map { run -> Florence2Coordinates in
                    var bins = LocText.bins(run)
                    if bins.count % 2 == 1 { bins.removeLast() }
                    return Florence2Coordinates(bins: bins, imageWidth: w, imageHeight: h)
                }
                out.append(LabelledPolygons(label: label, polygons: polygons))
            }
        }
        return out
    }

    /// `re.finditer(r"<poly>(.*?)</poly>")` group 1 (no newline inside).
    private static func polyInstances(_ s: Scalars) -> [Scalars] {
        var out: [Scalars] = []
        var i = 0
        outer: while i < s.count {
            guard PyText.hasPrefix(s, at: i, LocText.polyStart) else { i += 1; continue }
            var j = i + LocText.polyStart.count
            while j <= s.count {
                if PyText.hasPrefix(s, at: j, LocText.polyEnd) {
                    out.append(Array(s[(i + LocText.polyStart.count)..<j]))
                    i = j + LocText.polyEnd.count
                    continue outer
                }
                if j == s.count || s[j] == "\n" { break }
                j += 1
            }
            i += 1
        }
        return out
    }

    /// `re.finditer(r"((?:<loc_\d+>)+)(?:<sep>|$)")` group 1: `<loc_N>` runs followed by `<sep>`
    /// or the end (`$` also before a final newline).
    private static func polygonRuns(_ s: Scalars) -> [Scalars] {
        var out: [Scalars] = []
        var i = 0
        while i < s.count {
            let r = LocText.run(s, at: i, polygonTokens: false)
            if r.count > 0 {
                let atEnd = r.end == s.count || (r.end == s.count - 1 && s[r.end] == "\n")
                if atEnd { out.append(Array(s[i..<r.end])); i = r.end; continue }
                if PyText.hasPrefix(s, at: r.end, LocText.sep) {
                    out.append(Array(s[i..<r.end])); i = r.end + LocText.sep.count; continue
                }
            }
            i += 1
        }
        return out
    }
}
