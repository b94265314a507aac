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

    /// Splits `m` rows x `panels` output panels into about one piece per pool thread and runs `body`
    /// on each (panels in multiples of 4 when there are enough, else rows in multiples of 6).
    @inline(__always)
    static func split(rows m: Int, panels: Int, pool: WorkerPool, _ body: (Range<Int>, Range<Int>) -> Void) {
        let threads = pool.threadCount
        if threads == 1 || (m * panels) < 64 {
            body(0..<m, 0..<panels)
        } else if panels >= 4 * threads || m < 12 {
            let groups = (panels + 3) / 4
            let per = (groups + threads - 1) / threads
            let tasks = (groups + per - 1) / per
            pool.run(tasks) { i in
                let lo = i * per * 4, hi = min(panels, lo + per * 4)
                if lo < hi { body(0..<m, lo..<hi) }
            }
        } else {
            let blocks = (m + 5) / 6
            let per = (blocks + threads - 1) / threads
            let tasks = (blocks + per - 1) / per
            pool.run(tasks) { i in
                let lo = i * per * 6, hi = min(m, lo + per * 6)
                if lo < hi { body(lo..<hi, 0..<panels) }
            }
        }
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
