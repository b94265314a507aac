// Per-op timings of the vision tower for debugging (OCELLUS_PROFILE=1); a branch per op when off.
import Foundation

/// Debug timing per op kind (OCELLUS_PROFILE=1); off by default.
enum Profile {
    static let on = getenv("OCELLUS_PROFILE") != nil
    nonisolated(unsafe) static var totals: [String: Double] = [:]
    @inline(__always) static func time<R>(_ key: String, _ body: () throws -> R) rethrows -> R {
        if !on { return try body() }
        let t = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        totals[key, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t) / 1e6
        return r
    }
    static func report() {
        guard on else { return }
        for (k, v) in totals.sorted(by: { $0.value > $1.value }) { print(String(format: "profile %-8@ %8.1f ms", k as NSString, v)) }
    }
}
