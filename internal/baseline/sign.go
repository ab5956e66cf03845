package baseline

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// signatureContext separates baseline signatures from anything else the same
// key might sign. A new format version gets a new context, so a signature
// can never be replayed onto a file of another version.
const signatureContext = "podfim-baseline-v1\x00"

// signedMessage is what a signature covers: the header fields that decide how
// the rest of the file is read, and the payload digest, which stands in for
// the payload. The embedded public key is not included: ed25519 already binds
// a signature to the key that made it.
func signedMessage(h *header) []byte {
	msg := make([]byte, 0, len(signatureContext)+2+2+8+sha256.Size)
	msg = append(msg, signatureContext...)
	msg = binary.BigEndian.AppendUint16(msg, h.version)
	msg = binary.BigEndian.AppendUint16(msg, h.flags)
	msg = binary.BigEndian.AppendUint64(msg, h.payloadLen)
	return append(msg, h.digest[:]...)
}

// sign sets the signed flag, the public key and the signature of h.
func sign(h *header, key ed25519.PrivateKey) {
	h.flags |= flagSigned
	h.publicKey = bytes.Clone(key.Public().(ed25519.PublicKey))
	h.signature = ed25519.Sign(key, signedMessage(h))
}

// verify checks the signature of a signed header, and that it was made by
// want when want is non-nil. It runs after the digest check, so a good
// signature vouches for the payload too.
func verify(h *header, want ed25519.PublicKey) error {
	if !h.signed() {
		if want != nil {
			return errorf(ErrSignature, "baseline is not signed; a signature by key %s is required", KeyID(want))
		}
		return nil
	}
	pub := ed25519.PublicKey(h.publicKey)
	if !ed25519.Verify(pub, signedMessage(h), h.signature) {
		return errorf(ErrSignature, "baseline signature by key %s is invalid", KeyID(pub))
	}
	if want != nil && !pub.Equal(want) {
		return errorf(ErrSignature, "baseline is signed by key %s, want %s", KeyID(pub), KeyID(want))
	}
	return nil
}

// KeyID returns a short name for a public key: the hex of the first 8 bytes
// of the sha256 of the raw key. It is for people and logs; the full key is
// what verification compares.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}
