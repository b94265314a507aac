// `ocellus run --draw`: the image with the result drawn on it — boxes, OCR quadrilaterals and
// polygons as 2-pixel outlines, labels in a 5x7 bitmap font (ours; upper-case letters, digits and
// common punctuation; lower case is drawn as upper case).
import Capture
import Florence2

// MARK: - Font

/// 5x7 glyphs, one string of 7 rows of 5 columns ("#" = ink) per character.
private let glyphRows: [Character: [String]] = [
    "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "B": ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."],
    "C": [".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."],
    "D": ["####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."],
    "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
    "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
    "G": [".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"],
    "H": ["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "I": [".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "J": ["..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."],
    "K": ["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"],
    "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
    "M": ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"],
    "N": ["#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"],
    "O": [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
    "P": ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."],
    "Q": [".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"],
    "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
    "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
    "T": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
    "U": ["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
    "V": ["#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."],
    "W": ["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."],
    "X": ["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"],
    "Y": ["#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."],
    "Z": ["#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"],
    "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
    "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    "3": ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],
    "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    "6": ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
    "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
    "9": [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
    ".": [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."],
    ",": [".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."],
    "-": [".....", ".....", ".....", "#####", ".....", ".....", "....."],
    "_": [".....", ".....", ".....", ".....", ".....", ".....", "#####"],
    ":": [".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."],
    "'": [".##..", "..#..", ".#...", ".....", ".....", ".....", "....."],
    "/": [".....", "....#", "...#.", "..#..", ".#...", "#....", "....."],
    "(": ["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."],
    ")": [".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."],
    "?": [".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."],
    "!": ["..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."],
    "&": [".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"],
    "+": [".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."],
    "#": [".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."],
    "%": ["##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"],
]

/// An unknown character is drawn as a hollow box.
private let unknownGlyph = ["#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####"]

// MARK: - Canvas

/// Drawing on an RGB image in place, clipped to its bounds.
struct Overlay {
    let image: RGBImage

    /// Distinct outline colours, one per label index.
    static let palette: [(UInt8, UInt8, UInt8)] = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0),
                                                   (255, 64, 255), (0, 220, 220), (255, 140, 0), (160, 96, 255)]

    private func plot(_ p: UnsafeMutableBufferPointer<UInt8>, _ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < image.width, y < image.height else { return }
        let o = (y * image.width + x) * 3
        p[o] = c.0; p[o + 1] = c.1; p[o + 2] = c.2
    }

    /// A line of `width` pixels from (x0, y0) to (x1, y1) (Bresenham, thickened).
    func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, color c: (UInt8, UInt8, UInt8), width: Int = 2) {
        image.withMutableRGBBytes { p in
            var x = Int(x0.rounded()), y = Int(y0.rounded())
            let xe = Int(x1.rounded()), ye = Int(y1.rounded())
            let dx = abs(xe - x), dy = -abs(ye - y), sx = x < xe ? 1 : -1, sy = y < ye ? 1 : -1
            var err = dx + dy
            while true {
                for oy in 0..<width { for ox in 0..<width { plot(p, x + ox - width / 2, y + oy - width / 2, c) } }
                if x == xe && y == ye { break }
                let e2 = 2 * err
                if e2 >= dy { err += dy; x += sx }
                if e2 <= dx { err += dx; y += sy }
            }
        }
    }

    /// A closed outline through `points` (x, y alternating).
    func polygon(_ points: [Double], color: (UInt8, UInt8, UInt8)) {
        let n = points.count / 2
        guard n >= 2 else { return }
        for i in 0..<n {
            let j = (i + 1) % n
            line(points[2 * i], points[2 * i + 1], points[2 * j], points[2 * j + 1], color: color)
        }
    }

    /// `text` with its top-left at (x, y), on a filled background of `color`, in black.
    func label(_ text: String, x: Double, y: Double, color: (UInt8, UInt8, UInt8), scale: Int = 2) {
        let chars = Array(text.uppercased())
        guard !chars.isEmpty else { return }
        let w = chars.count * 6 * scale + scale, h = 9 * scale
        let x0 = max(0, min(Int(x), image.width - w)), y0 = max(0, min(Int(y) - h, image.height - h))
        image.withMutableRGBBytes { p in
            for yy in 0..<h { for xx in 0..<w { plot(p, x0 + xx, y0 + yy, color) } }
            for (i, ch) in chars.enumerated() {
                let rows = ch == " " ? [String](repeating: ".....", count: 7) : (glyphRows[ch] ?? unknownGlyph)
                for (r, row) in rows.enumerated() {
                    for (col, bit) in row.enumerated() where bit == "#" {
                        for sy in 0..<scale { for sx in 0..<scale {
                            plot(p, x0 + scale + i * 6 * scale + col * scale + sx, y0 + scale + r * scale + sy, (0, 0, 0))
                        } }
                    }
                }
            }
        }
    }

    /// Draws a Florence-2 result (boxes, quadrilaterals, polygons and their labels).
    func draw(_ output: Florence2Output) {
        switch output {
        case .text:
            return
        case let .boxes(boxes):
            drawBoxes(boxes)
        case let .ocr(lines):
            for (i, l) in lines.enumerated() {
                let c = Overlay.palette[i % Overlay.palette.count]
                polygon(l.quad.pixels, color: c)
                if l.quad.pixels.count >= 2 { label(l.text, x: l.quad.pixels[0], y: l.quad.pixels[1], color: c) }
            }
        case let .polygons(instances):
            drawPolygons(instances)
        case let .boxesOrPolygons(boxes, polygons):
            drawBoxes(boxes)
            drawPolygons(polygons)
        }
    }

    private func drawBoxes(_ boxes: [LabelledBox]) {
        for (i, b) in boxes.enumerated() {
            let c = Overlay.palette[i % Overlay.palette.count]
            let v = b.box.pixels
            guard v.count >= 4 else { continue }
            polygon([v[0], v[1], v[2], v[1], v[2], v[3], v[0], v[3]], color: c)
            if !b.label.isEmpty { label(b.label, x: v[0], y: v[1], color: c) }
        }
    }

    private func drawPolygons(_ instances: [LabelledPolygons]) {
        for (i, inst) in instances.enumerated() {
            let c = Overlay.palette[i % Overlay.palette.count]
            for poly in inst.polygons { polygon(poly.pixels, color: c) }
            if !inst.label.isEmpty, let first = inst.polygons.first, first.pixels.count >= 2 {
                label(inst.label, x: first.pixels[0], y: first.pixels[1], color: c)
            }
        }
    }
}
