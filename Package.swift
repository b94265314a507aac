// swift-tools-version:6.0
// Ocellus: an edge vision-language daemon. One package; see README.md for the map of targets.
import PackageDescription

let package = Package(
    name: "Ocellus",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ocellusd", targets: ["ocellusd"]),
        .executable(name: "ocellus", targets: ["ocellus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // MARK: - C: kernels and system libraries
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-strict-aliasing"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CV4L2", pkgConfig: "libv4l2", providers: [.apt(["libv4l-dev"])]),
        .target(name: "CV4L2Shim", dependencies: ["CV4L2"]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .target(name: "CMosquittoShim", dependencies: ["CMosquitto"]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .target(name: "CPNGShim", dependencies: ["CPNG"]),
        // Test-only: counts heap allocations (interposes malloc); linked into the test executable only.
        .target(name: "CMallocCounter"),

        // MARK: - Swift modules
        .target(name: "Compute", dependencies: [
            "CKernels", "COpenBLAS",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Florence2", dependencies: [
            "Compute",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Capture", dependencies: [
            "CV4L2", "CV4L2Shim", "CTurboJPEG", "CPNGShim",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "MQTT", dependencies: [
            "CMosquitto", "CMosquittoShim",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Daemon", dependencies: [
            "Compute", "Florence2", "Capture", "MQTT", "CSystemd",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "ocellusd", dependencies: [
            "Daemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "ocellus", dependencies: [
            "Compute", "Florence2", "Capture", "Daemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // MARK: - Tests (one per module; fixtures beside them)
        .testTarget(name: "ComputeTests", dependencies: ["Compute", "CKernels", "CMallocCounter"], resources: [.copy("Fixtures")]),
        .testTarget(name: "Florence2Tests", dependencies: ["Florence2", "Compute", "CMallocCounter"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "CMallocCounter"], resources: [.copy("Fixtures")]),
        // Test-only helpers around a real broker (MQTT.LocalBroker), shared by the MQTT and daemon tests.
        .target(name: "TestSupport", dependencies: ["MQTT"], path: "Tests/TestSupport"),
        .testTarget(name: "MQTTTests", dependencies: ["MQTT", "TestSupport"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Capture", "Florence2", "MQTT", "TestSupport", "ocellusd"]),
    ]
)
