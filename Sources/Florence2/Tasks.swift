// Florence-2's task prompts, as transformers 5.23.0 `Florence2Processor` (`task_prompts_without_inputs`,
// `task_prompts_with_input`, `_construct_prompts`, `tasks_answer_post_processing_type`), and the
// location bins of `Florence2PostProcessor.quantize`.

// MARK: - Tasks

/// The 15 Florence-2 tasks, named by their task token (the raw value).
public enum Florence2Task: String, CaseIterable, Codable, Sendable {
    case ocr = "<OCR>"
    case ocrWithRegion = "<OCR_WITH_REGION>"
    case caption = "<CAPTION>"
    case detailedCaption = "<DETAILED_CAPTION>"
    case moreDetailedCaption = "<MORE_DETAILED_CAPTION>"
    case objectDetection = "<OD>"
    case denseRegionCaption = "<DENSE_REGION_CAPTION>"
    case regionProposal = "<REGION_PROPOSAL>"
    case captionToPhraseGrounding = "<CAPTION_TO_PHRASE_GROUNDING>"
    case referringExpressionSegmentation = "<REFERRING_EXPRESSION_SEGMENTATION>"
    case regionToSegmentation = "<REGION_TO_SEGMENTATION>"
    case openVocabularyDetection = "<OPEN_VOCABULARY_DETECTION>"
    case regionToCategory = "<REGION_TO_CATEGORY>"
    case regionToDescription = "<REGION_TO_DESCRIPTION>"
    case regionToOCR = "<REGION_TO_OCR>"

    /// The task of a task token such as `"<OD>"`; an unknown token is an error naming it.
    public init(token: String) throws {
        guard let t = Florence2Task(rawValue: token) else { throw Florence2TaskError.unknownTask(token) }
        self = t
    }

    /// The task token, e.g. `"<OD>"`.
    public var token: String { rawValue }

    /// What the task takes besides the image.
    public var input: Florence2TaskInputKind {
        switch self {
        case .ocr, .ocrWithRegion, .caption, .detailedCaption, .moreDetailedCaption, .objectDetection,
             .denseRegionCaption, .regionProposal: return .none
        case .captionToPhraseGrounding, .referringExpressionSegmentation, .openVocabularyDetection: return .text
        case .regionToSegmentation, .regionToCategory, .regionToDescription, .regionToOCR: return .region
        }
    }

    /// How the generated text is parsed (`tasks_answer_post_processing_type`).
    public var resultKind: Florence2ResultKind {
        switch self {
        case .ocr, .caption, .detailedCaption, .moreDetailedCaption, .regionToCategory, .regionToDescription,
             .regionToOCR: return .pureText
        case .ocrWithRegion: return .ocr
        case .objectDetection, .denseRegionCaption: return .descriptionWithBBoxes
        case .regionProposal: return .bboxes
        case .captionToPhraseGrounding: return .phraseGrounding
        case .referringExpressionSegmentation, .regionToSegmentation: return .polygons
        case .openVocabularyDetection: return .descriptionWithBBoxesOrPolygons
        }
    }

    /// The prompt template; `{input}` marks where the input goes.
    public var template: String {
        switch self {
        case .ocr: return "What is the text in the image?"
        case .ocrWithRegion: return "What is the text in the image, with regions?"
        case .caption: return "What does the image describe?"
        case .detailedCaption: return "Describe in detail what is shown in the image."
        case .moreDetailedCaption: return "Describe with a paragraph what is shown in the image."
        case .objectDetection: return "Locate the objects with category name in the image."
        case .denseRegionCaption: return "Locate the objects in the image, with their descriptions."
        case .regionProposal: return "Locate the region proposals in the image."
        case .captionToPhraseGrounding: return "Locate the phrases in the caption: {input}"
        case .referringExpressionSegmentation: return "Locate {input} in the image with mask"
        case .regionToSegmentation: return "What is the polygon mask of region {input}"
        case .openVocabularyDetection: return "Locate {input} in the image."
        case .regionToCategory: return "What is the region {input}?"
        case .regionToDescription: return "What does the region {input} describe?"
        case .regionToOCR: return "What text is in the region {input}?"
        }
    }

    // MARK: - Prompts

    /// The prompt the text encoder sees. The input is stripped of surrounding whitespace (v5's
    /// `.strip()`; Python's whitespace set). A task without input must get `nil` or blank text; a
    /// task with input must get non-blank text; a region task's text must be exactly four
    /// `<loc_N>` tokens (N in 0…999), e.g. from `regionTokens`.
    public func prompt(text: String? = nil) throws -> String {
        let stripped = text.map { PyText.strip($0) } ?? ""
        switch input {
        case .none:
            guard stripped.isEmpty else { throw Florence2TaskError.unexpectedInput(task: self) }
            return template
        case .text, .region:
            guard !stripped.isEmpty else { throw Florence2TaskError.missingInput(task: self) }
            if input == .region, LocationBins.parseRegion(stripped) == nil {
                throw Florence2TaskError.invalidRegion(task: self, text: stripped)
            }
            return fill(stripped)
        }
    }

    /// The prompt of a region task for a box in pixels of the original image.
    public func prompt(region box: PixelBox, imageWidth: Int, imageHeight: Int) throws -> String {
        guard input == .region else {
            throw input == .none ? Florence2TaskError.unexpectedInput(task: self) : Florence2TaskError.notARegionTask(task: self)
        }
        return try prompt(text: LocationBins.regionTokens(box, imageWidth: imageWidth, imageHeight: imageHeight))
    }

    /// Parses a raw prompt `"<TASK>"` or `"<TASK>input"` (the task token first, as the processor's
    /// users write it), returning the task and its expanded prompt.
    public static func parse(_ raw: String) throws -> (task: Florence2Task, prompt: String) {
        guard raw.hasPrefix("<"), let close = raw.firstIndex(of: ">") else { throw Florence2TaskError.unknownTask(raw) }
        let task = try Florence2Task(token: String(raw[...close]))
        let rest = String(raw[raw.index(after: close)...])
        return (task, try task.prompt(text: rest))
    }
}

/// What a task takes besides the image.
public enum Florence2TaskInputKind: String, Codable, Sendable {
    /// Nothing: the prompt is the template.
    case none
    /// Free text (a caption, an expression, a category).
    case text
    /// A region, written as four `<loc_N>` tokens.
    case region
}

/// How a task's output is parsed (the post-processor's parse task names).
public enum Florence2ResultKind: String, Codable, Sendable {
    /// The text itself (captions, OCR, region category/description/OCR).
    case pureText = "pure_text"
    /// Text lines with quadrilaterals (OCR with region).
    case ocr
    /// Labels with boxes (OD, dense region caption).
    case descriptionWithBBoxes = "description_with_bboxes"
    /// Unlabelled boxes (region proposal).
    case bboxes
    /// Phrases with boxes, pronouns and the like dropped (caption to phrase grounding).
    case phraseGrounding = "phrase_grounding"
    /// Polygons (referring expression segmentation, region to segmentation).
    case polygons
    /// Labels with boxes or polygons (open-vocabulary detection).
    case descriptionWithBBoxesOrPolygons = "description_with_bboxes_or_polygons"
}

/// Why a prompt cannot be built.
public enum Florence2TaskError: Error, CustomStringConvertible, Equatable {
    /// Not one of the 15 task tokens.
    case unknownTask(String)
    /// The task needs text or a region and got none.
    case missingInput(task: Florence2Task)
    /// The task takes no input and got some.
    case unexpectedInput(task: Florence2Task)
    /// A region task's input is not four `<loc_N>` tokens with N in 0…999.
    case invalidRegion(task: Florence2Task, text: String)
    /// A region was given to a task that takes text.
    case notARegionTask(task: Florence2Task)

    public var description: String {
        switch self {
        case let .unknownTask(t):
            return "unknown Florence-2 task '\(t)'; expected one of \(Florence2Task.allCases.map(\.token).joined(separator: " "))"
        case let .missingInput(t): return "task \(t.token) needs \(t.input == .region ? "a region" : "input text")"
        case let .unexpectedInput(t): return "task \(t.token) takes no input text"
        case let .invalidRegion(t, s): return "task \(t.token) needs a region of four <loc_N> tokens (N in 0...999), got '\(s)'"
        case let .notARegionTask(t): return "task \(t.token) takes text, not a region"
        }
    }
}

// MARK: - Encoder input

extension BPETokenizer {
    /// The text ids of the encoder input, `<s> prompt </s>`; the model puts the 577 image tokens
    /// before them.
    public func encoderInputIds(prompt: String) -> [Int32] {
        [bosId] + encode(prompt) + [eosId]
    }
}

// MARK: - Location bins

/// A box in pixels of the original image: (xmin, ymin, xmax, ymax).
public struct PixelBox: Codable, Equatable, Sendable {
    /// Left, top, right, bottom edges in pixels.
    public var xmin: Double, ymin: Double, xmax: Double, ymax: Double

    /// A box from its corners.
    public init(xmin: Double, ymin: Double, xmax: Double, ymax: Double) {
        self.xmin = xmin; self.ymin = ymin; self.xmax = xmax; self.ymax = ymax
    }
}

/// Florence-2's 1000 × 1000 location bins (`Florence2PostProcessor.quantize` / `dequantize`).
public enum LocationBins {
    /// Bins per axis.
    public static let count = 1000

    /// `clamp(floor(x / (size / 1000)), 0, 999)`.
    public static func quantize(_ x: Double, size: Int) -> Int {
        let q = (x / (Double(size) / Double(count))).rounded(.down)
        if !(q >= 0) { return 0 }          // negative or NaN
        return q >= Double(count - 1) ? count - 1 : Int(q)
    }

    /// The bin centre in pixels: `(bin + 0.5) · size / 1000`.
    public static func dequantize(_ bin: Int, size: Int) -> Double {
        (Double(bin) + 0.5) * (Double(size) / Double(count))
    }

    /// What transformers 5.23.0 reports for a bin: the float32 product, truncated by `.int()`.
    public static func dequantizeTruncated(_ bin: Int, size: Int) -> Int {
        let v = (Float(bin) + 0.5) * Float(Double(size) / Double(count))
        return v.isFinite ? Int(v) : 0
    }

    /// `<loc_x1><loc_y1><loc_x2><loc_y2>` for a box in pixels.
    public static func regionTokens(_ b: PixelBox, imageWidth: Int, imageHeight: Int) -> String {
        let bins = [quantize(b.xmin, size: imageWidth), quantize(b.ymin, size: imageHeight),
                    quantize(b.xmax, size: imageWidth), quantize(b.ymax, size: imageHeight)]
        return bins.map { "<loc_\($0)>" }.joined()
    }

    /// The four bins of a text that is exactly four `<loc_N>` tokens, else nil.
    static func parseRegion(_ s: String) -> [Int]? {
        var rest = Substring(s)
        var bins: [Int] = []
        while !rest.isEmpty {
            guard rest.hasPrefix("<loc_"), let close = rest.firstIndex(of: ">") else { return nil }
            let digits = rest[rest.index(rest.startIndex, offsetBy: 5)..<close]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let v = Int(digits), v < count else { return nil }
            bins.append(v)
            rest = rest[rest.index(after: close)...]
        }
        return bins.count == 4 ? bins : nil
    }
}

// MARK: - Helpers

extension Florence2Task {
    /// The template with `{input}` replaced (templates are ASCII, so characters are scalars).
    fileprivate func fill(_ input: String) -> String {
        let t = Array(template)
        let marker = Array("{input}")
        for i in 0...(t.count - marker.count) where Array(t[i..<(i + marker.count)]) == marker {
            return String(t[..<i]) + input + String(t[(i + marker.count)...])
        }
        return template
    }
}
