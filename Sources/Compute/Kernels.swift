// Kernels: the Swift face of the CKernels run-time dispatch (ckernels.h): which int8 variant runs,
// forcing the reference, and the quantize/GEMM entry points Linear, the bench and the tests use.
import CKernels
import Foundation
import Logging

// MARK: - Errors

/// A kernel variant request that cannot be honoured.
public enum KernelError: Error, CustomStringConvertible, Equatable {
    /// No variant of that name is compiled for this architecture.
    case unknownVariant(String, known: [String])
    /// The variant exists but this CPU lacks the instructions it needs.
    case unsupportedVariant(String, supported: [String])

    public var description: String {
        switch self {
        case let .unknownVariant(name, known):
            return "unknown kernel variant '\(name)'; this build has \(known.joined(separator: ", "))"
        case let .unsupportedVariant(name, supported):
            return "kernel variant '\(name)' is not supported by this CPU; it supports \(supported.joined(separator: ", "))"
        }
    }
}

// MARK: - Dispatch

/// The int8 kernel variants: one is chosen once per process (the best the CPU supports, or
/// `$OCELLUS_KERNELS`), logged once, and can be switched for tests and debugging.
public enum Kernels {
    static let logger = Logger(label: "ocellus.kernels")

    /// Logs the chosen variant (and an ignored `$OCELLUS_KERNELS`) the first time it is evaluated.
    private static let announced: Void = {
        let t = ock_kernels_active()!
        let env = ock_kernels_env_status()
        if env != 0 {
            let requested = ProcessEnvironment.value("OCELLUS_KERNELS") ?? ""
            logger.warning("OCELLUS_KERNELS ignored", metadata: [
                "requested": "\(requested)",
                "reason": "\(env == 1 ? "unknown variant (this build has \(compiled.joined(separator: ", ")))" : "not supported by this CPU")",
                "using": "\(String(cString: t.pointee.name))",
            ])
        }
        logger.info("int8 kernels selected", metadata: ["variant": "\(String(cString: t.pointee.name))"])
    }()

    /// The name of the active variant ("reference", "avx2", "avx512vnni", "neon", "neon-dotprod").
    public static var variant: String {
        _ = announced
        return String(cString: ock_kernels_active()!.pointee.name)
    }

    /// The variant CPU detection alone would choose.
    public static var best: String { String(cString: ock_kernels_best()!.pointee.name) }

    /// Every variant compiled for this architecture, reference first.
    public static var compiled: [String] {
        (0..<Int(ock_kernels_count())).map { String(cString: ock_kernels_at(Int32($0))!.pointee.name) }
    }

    /// The variants this CPU can run, reference first.
    public static var supported: [String] {
        (0..<Int(ock_kernels_count())).filter { ock_kernels_supported_at(Int32($0)) != 0 }
            .map { String(cString: ock_kernels_at(Int32($0))!.pointee.name) }
    }

    /// Makes variant `name` active for the whole process (tests, debugging, the bench).
    public static func select(_ name: String) throws {
        _ = announced
        switch ock_kernels_set_active(name) {
        case 0:
            logger.info("int8 kernels switched", metadata: ["variant": "\(name)"])
        case -1:
            throw KernelError.unknownVariant(name, known: compiled)
        default:
            throw KernelError.unsupportedVariant(name, supported: supported)
        }
    }

    /// `true` forces the plain reference kernels; `false` returns to the best supported variant.
    public static var forceReference: Bool {
        get { variant == "reference" }
        set { try! select(newValue ? "reference" : best) }
    }

    /// What the start-up rule picks for an `$OCELLUS_KERNELS` value of `request` (nil: unset):
    /// the variant and 0 (honoured/none), 1 (unknown name) or 2 (unsupported on this CPU).
    static func choose(request: String?) -> (variant: String, status: Int) {
        var status: Int32 = 0
        let t = request.map { r in r.withCString { ock_kernels_choose($0, &status)! } } ?? ock_kernels_choose(nil, &status)!
        return (String(cString: t.pointee.name), Int(status))
    }

    // MARK: - Tables (module-internal)

    /// The active function table.
    static var active: UnsafePointer<ock_kernels> {
        _ = announced
        return ock_kernels_active()!
    }

    /// The table of a supported variant, or nil.
    static func table(_ name: String) -> UnsafePointer<ock_kernels>? { ock_kernels_find(name) }

    // MARK: - Entry points (pointers; module-internal)

    /// Quantizes rows `rows` of `x` `[., ldx]` into `q` `[., ldq]` and `scale` with table `t`.
    @inline(__always)
    static func quantize(_ t: UnsafePointer<ock_kernels>, _ x: UnsafePointer<Float>, ldx: Int, k: Int,
                         rows: Range<Int>, into q: UnsafeMutablePointer<Int8>, ldq: Int,
                         scale: UnsafeMutablePointer<Float>) {
        t.pointee.quantize!(x, ldx, k, rows.lowerBound, rows.upperBound, q, ldq, scale)
    }

    /// Runs table `t`'s GEMM on rows `rows` and output panels `panels` of `args`.
    @inline(__always)
    static func gemm(_ t: UnsafePointer<ock_kernels>, _ args: UnsafePointer<ock_gemm_args>,
                     rows: Range<Int>, panels: Range<Int>) {
        t.pointee.gemm!(args, rows.lowerBound, rows.upperBound, panels.lowerBound, panels.upperBound)
    }

    /// Splits `m` rows x `panels` output panels into about one piece per pool thread and runs
    /// table `t`'s GEMM on each (panels in multiples of 4 when there are enough, else rows in
    /// multiples of 6). Allocates nothing.
    static func gemmSplit(_ t: UnsafePointer<ock_kernels>, _ args: UnsafePointer<ock_gemm_args>, rows m: Int, panels: Int, pool: WorkerPool) {
        let threads = pool.threadCount
        if threads == 1 || (m * panels) < 64 {
            gemm(t, args, rows: 0..<m, panels: 0..<panels)
        } else if panels >= 4 * threads || m < 12 {
            let groups = (panels + 3) / 4
            let per = (groups + threads - 1) / threads
            pool.run((groups + per - 1) / per, GemmPieces(t: t, args: args, m: m, panels: panels, per: per * 4, byPanels: true))
        } else {
            let blocks = (m + 5) / 6
            let per = (blocks + threads - 1) / threads
            pool.run((blocks + per - 1) / per, GemmPieces(t: t, args: args, m: m, panels: panels, per: per * 6, byPanels: false))
        }
    }

    /// One piece of a split GEMM: a range of output panels (all rows) or of rows (all panels).
    private struct GemmPieces: ParallelTask {
        let t: UnsafePointer<ock_kernels>, args: UnsafePointer<ock_gemm_args>
        let m: Int, panels: Int, per: Int, byPanels: Bool
        func callAsFunction(_ i: Int) {
            let lo = i * per
            if byPanels {
                let hi = min(panels, lo + per)
                if lo < hi { gemm(t, args, rows: 0..<m, panels: lo..<hi) }
            } else {
                let hi = min(m, lo + per)
                if lo < hi { gemm(t, args, rows: lo..<hi, panels: 0..<panels) }
            }
        }
    }

    /// Quantizes rows of activations (`quantize`) as a pool task.
    struct QuantizeRows: RangeTask {
        let t: UnsafePointer<ock_kernels>, x: UnsafePointer<Float>, k: Int
        let q: UnsafeMutablePointer<Int8>, scale: UnsafeMutablePointer<Float>
        func callAsFunction(_ rows: Range<Int>) { quantize(t, x, ldx: k, k: k, rows: rows, into: q, ldq: k, scale: scale) }
    }
}

// MARK: - Environment

/// Reads process environment variables without Foundation's dictionary copy.
enum ProcessEnvironment {
    /// The value of `name`, or nil.
    static func value(_ name: String) -> String? {
        guard let p = getenv(name) else { return nil }
        return String(cString: p)
    }
}
