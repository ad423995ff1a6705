import DevKitBoardCLI
import DevKitModel
import DiceRIoT

/// What `devkit cert` can fail on, each with the exit code scripts act on.
enum CertError: Error, CLIReportable {
    /// A missing or conflicting option.
    case usage(String)
    /// A value that breaks the rules (ID, UDS, MAC, version).
    case invalidInput(InputError, source: String?)
    /// A file that cannot be read.
    case unreadable(path: String, reason: String)
    /// A map, bin or elf that does not hold what the generator needs.
    case firmware(FirmwareError)
    /// The inputs give a key the device could never use.
    case generation(GenerationError)
    /// An output that cannot be written; `errno` when a system call said why.
    case output(path: String, reason: String, errno: Int32? = nil)
    /// Batch mode: some devices failed (each was reported with its line).
    case batchIncomplete(failed: Int, total: Int)

    var exitStatus: ExitStatus {
        switch self {
        case .usage, .invalidInput: return .usage
        case .unreadable: return .noInput
        case .firmware, .generation: return .dataError
        case .output(_, _, let errno): return errno.map(ExitStatus.init(fileErrno:)) ?? .cannotCreate
        case .batchIncomplete: return .partialFailure
        }
    }

    var userMessage: String {
        switch self {
        case .usage(let text): return text
        case .invalidInput(let error, let source):
            return source.map { "\($0): \(error)" } ?? "\(error)"
        case .unreadable(let path, let reason): return "cannot read \(escaped(path)): \(reason)"
        case .firmware(let error): return "\(error)"
        case .generation(let error): return "\(error)"
        case .output(let path, let reason, _):
            return "cannot write \(escaped(path)): \(reason); choose a writable --output-dir"
        case .batchIncomplete(let failed, let total):
            let rest = total - failed
            let certified = rest == 0 ? "none was certified" : rest == 1 ? "the other one was certified" : "the other \(rest) were certified"
            return "\(failed) of \(total) devices failed (see the messages above); \(certified)"
        }
    }
}
