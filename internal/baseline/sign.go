package baseline

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// signatureContexts separate baseline signatures from anything else the
// same key might sign, and one format version from another: a signature
// can never be replayed onto a file of another version.
var signatureContexts = map[uint16]string{
	1: "podfim-baseline-v1\x00",
	2: "podfim-baseline-v2\x00",
}

// signedMessage is what a signature covers: every header field but the
// key and the signature themselves. In version 2 that includes the header
// record (subject, creation time, serial, policy, image), so none of it
// can be changed or swapped between files; the payload digest stands in
// for the payload. The embedded public key is not included: ed25519
// already binds a signature to the key that made it.
func signedMessage(h *header) []byte {
	ctx := signatureContexts[h.version]
	msg := make([]byte, 0, len(ctx)+2+2+recordLenSize+len(h.record)+8+sha256.Size)
	msg = append(msg, ctx...)
	msg = binary.BigEndian.AppendUint16(msg, h.version)
	msg = binary.BigEndian.AppendUint16(msg, h.flags)
	if h.version >= 2 {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(h.record)))
		msg = append(msg, h.record...)
	}
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
