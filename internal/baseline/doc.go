// Package baseline owns the stored baseline: the file that records what a
// tree looked like when it was trusted. It defines the file format, writes
// it deterministically and atomically, signs it with ed25519 when given a
// key, manages the key files, and reads it back strictly: a file that is
// not exactly a valid baseline is an error (ErrFormat, ErrVersion,
// ErrDigest or ErrSignature), never a crash and never a partial result.
//
// ReadFile decodes a whole baseline. OpenFile returns a Reader that yields
// one entry at a time, for a comparison that must not hold the decoded
// baseline (about 200 bytes an entry in memory, against under 50 stored):
// it holds one group's hashes only, and reads the file twice
// (authenticate, then decode with the digest checked again; Rewind reads
// it once more). ReadFile is OpenFile and Next until io.EOF, so both make
// the same checks. WriteFile encodes a whole baseline; a Writer
// (CreateFile) takes one entry at a time and gives the same bytes. (The
// tests also read and write baselines in memory: memory_test.go.)
// QuickIndex keeps what a quick scan asks of a baseline, and no more.
//
// # File format, version 2
//
// All integers in the header are big-endian.
//
//	size  field
//	8     magic "PODFIMBL"
//	2     format version (2)
//	2     flags: bit 0 = signed; other bits must be zero
//	32    raw ed25519 public key (signed files only)
//	64    ed25519 signature (signed files only)
//	4     header record length m, at most 2 MiB
//	m     header record (below): the Header
//	8     payload length n
//	32    sha256 of the payload (the baseline's digest)
//	n     payload: one gzip member (RFC 1952)
//
// The header record holds the Header, canonically encoded (uvarints as in
// the body, below; a string is a uvarint length and its bytes):
//
//	subject        string, at most 1,024 bytes of printable UTF-8
//	created        uvarint: nanoseconds since 1970 (UTC), 0 = not recorded
//	serial         uvarint, 0 = not recorded
//	policy digest  string, at most 256 bytes
//	policy         string, at most 1 MiB (the policy document; empty = not stored)
//	compared       uvarint: attr.Set a check compares; 0 = all
//	image          1 byte: 0 = none, 1 = the following:
//	  manifest     string: sha256:<64 hex> or sha512:<128 hex> (required)
//	  config       string: a digest as above (required)
//	  index        string: a digest as above, or empty
//	  platform     string: os/arch[/variant] in lowercase, or empty
//	  layers       uvarint count (at most 1,024), then that many digest strings
//
// and nothing after the last field. A version 1 file (still read; never
// written) has no record length and record: its policy digest is the first
// field of its body, and its entries have no layer.
//
// The file ends with the payload: trailing bytes are an error, both after
// the payload and after the gzip member inside it. Readers accept any valid
// gzip member. Writers produce a deterministic one: no file name, mtime 0,
// OS 255; the body deflated at level 6 (level 9 takes three times as long
// to write for 0.5% less), except for the hash part of each group of
// entries (below) with at least 256 bytes: the compressor is ended with a
// sync flush before it, the hash part follows in stored (uncompressed)
// deflate blocks, and the compressor starts again, with no history, after
// it. The deflate bytes may change with the Go release, so across podfim
// versions compare baselines by content, not by file digest.
//
// The signature is over the message
//
//	"podfim-baseline-v2\x00" || version (2) || flags (2) || m (4) || header record (m)
//	  || payload length (8) || payload digest (32)
//
// so it covers everything the header says (subject, time, serial, policy,
// image) and the payload through its digest: none of it can be changed,
// or moved to another file, without the key. Version 1 signed
// "podfim-baseline-v1\x00" || version || flags || payload length || digest:
// nothing bound such a file to what it was for (see docs/security.md).
// Each version has its own context string.
//
// A reader checks, in order: the magic; the version (0 is ErrFormat, newer than
// Version is ErrVersion); the flags; the file and payload sizes against
// ReadOptions.MaxSize; the whole payload is read (never more than the
// header claims and the input holds) and nothing may follow it; the digest
// (ErrDigest); the signature, when the file is signed or a key is required
// (ErrSignature); the header record, then ReadOptions.Binding (ErrBinding);
// and only then does it decompress and decode the payload. OpenFile makes
// these checks before it returns, and decodes the entry count (against
// ReadOptions.MaxEntries); Next decodes the entries, and returns
// io.EOF only after the end marker, the end of the gzip stream and its
// checksum were checked too. OpenFile checks the digest and signature in a
// first pass over the file and digests the payload again as Next reads
// it: a file changed in between makes Next end with ErrDigest, never
// io.EOF (its changed bytes may reach the decompressor and the decoder,
// which take hostile input, but no result survives them).
//
// # Body
//
// The decompressed payload (the body) holds, in order:
//
//	entry count      uvarint, at most 50,000,000 (MaxEntries)
//	groups           the entries, strictly increasing by attr.ComparePaths, in groups of
//	                 4096 (the last group holds the rest; there is none without entries).
//	                 Each group:
//	    hash length  uvarint: the size of the hash bytes, at most 64 per entry of the group
//	    hash bytes   the hashes of the group's entries that have one, in entry order
//	    entries      the group's entries; each takes its hash from the front of the
//	                 group's hash bytes, which its entries must use up exactly
//	end marker       the 4 bytes "\x00END"
//
// followed by the end of the gzip stream. uvarints are those of
// encoding/binary and must be minimal (no redundant trailing zero group);
// "zig-zag" is binary.PutVarint's signed encoding; a delta is the zig-zag
// varint of the field minus the same field of the last earlier entry that
// collected it (0 before the first), computed with 64-bit wraparound.
//
// Each entry:
//
//	shared     uvarint: length of the longest common prefix with the previous path (0 for the first)
//	suffix     uvarint length + bytes: the rest of the path
//	attrs      uvarint: attr.Set, only defined bits, at most one content hash
//	type       1 byte: attr.FileType, 0..7
//	flags      1 byte: bit 0 = racy, bit 1 = ctime is coded against mtime (below),
//	           bit 2 = a layer follows; others zero
//	mode       uvarint, if attrs has mode; at most 07777
//	uid        uvarint, if attrs has uid; at most 2^32-1
//	gid        uvarint, if attrs has gid; at most 2^32-1
//	size       uvarint, if attrs has size; at most 2^63-1
//	inode      delta, if attrs has inode
//	nlink      uvarint, if attrs has nlink
//	rdev       uvarint, if attrs has type and the type is a character or block device
//	target     uvarint length (at most 4096) + bytes, if attrs has target and the type is symlink
//	mtime      delta (nanoseconds), if attrs has mtime
//	ctime      if attrs has ctime: zig-zag varint of ctime minus a base, both in nanoseconds and
//	           wrapping; the base is this entry's mtime when flag bit 1 is set, else the
//	           previous ctime as for a delta. Bit 1 is set exactly when attrs has mtime and
//	           ctime, and the mtime base gives a zig-zag value no larger than the other.
//	xattrs     if attrs has xattrs: uvarint count (at most 1024), then per attribute, in
//	           strictly increasing name order: uvarint name length (1..255) + name,
//	           uvarint value length (at most 65536) + value; names and values
//	           together at most 262,144 bytes (MaxXattrBytes)
//	hash len   uvarint, if attrs has a content hash: 0 (not hashed) or the digest size
//	           (32 sha256, 64 sha512, 32 blake3); non-zero only for regular files. The
//	           bytes are the next ones of the group's hash bytes.
//	layer      uvarint, if flag bit 2: the image layer (1 = the base) the entry came
//	           from, at most the header's layer count; 0 is never stored
//
// Paths are at most 4096 bytes, start with "/", contain no NUL byte and no
// empty, "." or ".." component, and may be any other bytes (they need not
// be UTF-8). Link targets and xattr names contain no NUL byte. A field that
// attrs does not name is not stored and reads as zero; a writer refuses an
// entry whose uncollected fields are not zero rather than drop them.
//
// Why it looks like this:
//   - Only the canonical encoding is accepted (minimal varints, the longest
//     shared prefix, sorted xattrs, the prescribed ctime base), so a body
//     that decodes re-encodes to the same bytes, and baselines with the
//     same content have the same body.
//   - The hashes of a group sit in front of its entries instead of inside
//     them, and are stored, not compressed: hashes are random bytes
//     (compressing the duplicates of a real tree saves about 5%),
//     Huffman-decoding them byte by byte took a third of the decoding
//     time, and the metadata compresses better without them in between:
//     with each hash compressed after its entry, the synthetic set below
//     takes 50.6 bytes per entry instead of 47.7, the 100,000 files of
//     the benchmark tree 37.7 instead of 35.3. Groups, rather than one
//     block of every hash after the entries, let a reader stream the
//     entries holding one group's hashes (128 KiB of sha256), not all;
//     each group costs a flush, a stored block header and the
//     compressor's history, since the hashes push the metadata before
//     them out of deflate's 32 KiB window: 0.14 bytes per entry for a
//     real /usr (0.6 with groups of 1024, 0.06 with 8192). In front of
//     the entries, rather than after, so that each entry has its hash
//     when it is decoded and is checked whole as soon as it is read.
//   - Times and inodes are deltas: files of one tree get inodes in sequence
//     and share dates (all files of an image layer have nearly one ctime).
//     A file written once has ctime == mtime, hence the choice of base.
//   - Every length and count is checked against its limit before anything
//     is allocated for it, and the entry count sizes the first allocation
//     only up to what the payload could hold, so a small file cannot make
//     a reader allocate much. ReadOptions.MaxSize also bounds the
//     decompressed body.
//
// Size, with sha256 (see TestSize100k): 35.4 bytes per file for a real
// /usr of 149,501 files (AIDE 0.18.3: 41.3), 44.2 for a tree of 100,000
// files with mtimes spread over two years (AIDE: 51.8), 47.7 for the
// synthetic test set (44.4 for its image-like variant); AIDE keeps times
// to the second only. (The first two were measured with one block of
// hashes after all the entries; groups add about 0.1 bytes per entry.)
package baseline
