// The job token handed to one worker so that only that worker can read it: a libsodium sealed box
// (crypto_box_seal: an ephemeral X25519 key and XSalsa20-Poly1305) to the worker's CURVE public key. CURVE keys
// are X25519 keys, so the pair a worker already holds for the control plane opens it. This is how the token
// crosses the MPI bootstrap, which is neither encrypted nor authenticated, without appearing in clear text.
import CSodium
import CZeroMQ
import Foundation

public enum SealedTokenError: Error, Equatable, CustomStringConvertible {
    case badKey(String)
    case sodium(String)
    case cannotOpen

    public var description: String {
        switch self {
        case .badKey(let why): "CURVE key: \(why)"
        case .sodium(let call): "libsodium \(call) failed"
        case .cannotOpen: "the sealed job token does not open with this rank's CURVE key (a key of another job?)"
        }
    }
}

public enum SealedToken {
    /// The 32 raw bytes of a Z85 CURVE key (40 characters).
    static func rawKey(_ z85: String) throws -> [UInt8] {
        guard z85.utf8.count == 40 else { throw SealedTokenError.badKey("\(z85.utf8.count) characters, not 40") }
        var out = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&out, z85) != nil else { throw SealedTokenError.badKey("not Z85") }
        return out
    }

    private static func initialize() throws {
        guard sodium_init() >= 0 else { throw SealedTokenError.sodium("sodium_init") }   // 1: already done
    }

    /// `message` sealed to the holder of `publicKey`'s secret key.
    public static func seal(_ message: Data, to publicKey: String) throws -> Data {
        try initialize()
        let pk = try rawKey(publicKey)
        var out = [UInt8](repeating: 0, count: message.count + Int(crypto_box_sealbytes()))
        let rc = message.withUnsafeBytes { m in
            crypto_box_seal(&out, m.bindMemory(to: UInt8.self).baseAddress, UInt64(message.count), pk)
        }
        guard rc == 0 else { throw SealedTokenError.sodium("crypto_box_seal") }
        return Data(out)
    }

    /// Opens a box sealed to `keys.publicKey`.
    public static func open(_ box: Data, with keys: CurveKeyPair) throws -> Data {
        try initialize()
        guard box.count >= Int(crypto_box_sealbytes()) else { throw SealedTokenError.cannotOpen }
        let pk = try rawKey(keys.publicKey), sk = try rawKey(keys.secretKey)
        var out = [UInt8](repeating: 0, count: box.count - Int(crypto_box_sealbytes()))
        let rc = box.withUnsafeBytes { c in
            crypto_box_seal_open(&out, c.bindMemory(to: UInt8.self).baseAddress!, UInt64(box.count), pk, sk)
        }
        guard rc == 0 else { throw SealedTokenError.cannotOpen }
        return Data(out)
    }
}
