import NIOSSL
import Testing
@testable import DPSService

/// What a failed handshake says: BoringSSL's reason in words, without error numbers
/// or source paths (the certificate-verify case runs against a real server in the
/// CLI tests; these are the errors swift-nio-ssl makes up itself).
@Suite struct TLSReasonTests {
    @Test func aSyntheticErrorIsItsWordsTrimmed() {
        let error = NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake]))
        #expect(DPSClient.tlsReason(error) == "eof during handshake")
    }

    @Test func eachReasonOnceInTheStacksOrder() {
        // Not sorted: "addition…" would come first.
        let error = BoringSSLError.sslError(
            [.eofDuringHandshake, .eofDuringAdditionalCertficiateChainValidation, .eofDuringHandshake])
        #expect(DPSClient.tlsReason(error) == "eof during handshake; eof during addition certificate chain validation")
    }

    @Test func anErrorWithoutAStackIsDescribedAsBefore() {
        let error = NIOSSLError.handshakeFailed(.syscallError)
        #expect(DPSClient.tlsReason(error) == "\(error)")
    }
}
