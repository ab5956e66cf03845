package evidence

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/podfim/podfim/internal/baseline"
)

// ManifestFormat names the manifest's format; it is also the domain
// separation of its signature, so that no other podfim signature (a
// baseline's) can be passed off as one.
const ManifestFormat = "podfim-evidence-manifest/v1"

// Names of the manifest and its signature in an export.
const (
	manifestName  = "manifest.json"
	signatureName = "manifest.sig"
)

// Bounds of Verify: an export is the size of a store at most.
const (
	maxManifestBytes = 16 << 20
	maxExportFiles   = DefaultMaxRecords*3 + 2
)

// Manifest lists every file of an export with its hash: signed, it proves
// what was captured (each record's time and path, the bytes it names)
// and when it was exported.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Subject is what the evidence is of (the pod, namespace/name), as the
	// exporter was told; empty when unknown.
	Subject string         `json:"subject,omitempty"`
	KeyID   string         `json:"key_id,omitempty"`
	Files   []ManifestFile `json:"files"`
}

// ManifestFile is one file of an export.
type ManifestFile struct {
	Name   string `json:"name"` // records/<id>.json or objects/sha256-<hex>
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// signed is the message a manifest's signature is over.
func signed(manifest []byte) []byte {
	return append([]byte(ManifestFormat+"\n"), manifest...)
}

// Export writes the evidence directory dir to w as a tar: manifest.json,
// manifest.sig (the hex ed25519 signature of the manifest, when key is
// not nil), then every record and object.
func Export(w io.Writer, dir string, key ed25519.PrivateKey, subject string, now time.Time) (*Manifest, error) {
	files, err := exportFiles(dir)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Format: ManifestFormat, Created: now.UTC(), Subject: subject, Files: files}
	if key != nil {
		m.KeyID = baseline.KeyID(key.Public().(ed25519.PublicKey))
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(w)
	if err := addBytes(tw, manifestName, mb, now); err != nil {
		return nil, err
	}
	if key != nil {
		sig := hex.EncodeToString(ed25519.Sign(key, signed(mb)))
		if err := addBytes(tw, signatureName, []byte(sig+"\n"), now); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		if err := addFile(tw, filepath.Join(dir, filepath.FromSlash(f.Name)), f, now); err != nil {
			return nil, err
		}
	}
	return m, tw.Close()
}

// exportFiles hashes every record and object of dir.
func exportFiles(dir string) ([]ManifestFile, error) {
	var out []ManifestFile
	for _, sub := range []string{"records", "objects"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, fmt.Errorf("failed to read the evidence in %q: %w", dir, err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".tmp") {
				continue
			}
			f, err := hashFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				return nil, err
			}
			f.Name = sub + "/" + e.Name()
			out = append(out, f)
		}
	}
	return out, nil
}

func hashFile(name string) (ManifestFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return ManifestFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return ManifestFile{}, fmt.Errorf("failed to read %q: %w", name, err)
	}
	return ManifestFile{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func addBytes(tw *tar.Writer, name string, b []byte, t time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: t, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// addFile adds the file as the manifest lists it: a file that changed
// since it was hashed fails the export instead of making a manifest that
// lies.
func addFile(tw *tar.Writer, name string, mf ManifestFile, t time.Time) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: mf.Name, Mode: 0o600, Size: mf.Size, ModTime: t, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(f, mf.Size)); err != nil {
		return fmt.Errorf("failed to export %q: %w", name, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != mf.SHA256 {
		return fmt.Errorf("%q changed while it was exported", name)
	}
	return nil
}

// Errors of Verify.
var (
	ErrUnsigned     = errors.New("the export has no signature")
	ErrBadSignature = errors.New("the manifest's signature does not verify")
	ErrTampered     = errors.New("the export does not match its manifest")
)

// Verify reads an export from r and checks it: with pub, that the
// manifest is signed by that key; always, that every file is listed in the
// manifest with its size and hash, that every listed file is there once,
// and that every object hashes to its name. It returns the manifest.
func Verify(r io.Reader, pub ed25519.PublicKey) (*Manifest, error) {
	tr := tar.NewReader(r)
	mb, err := next(tr, manifestName, maxManifestBytes)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil || m.Format != ManifestFormat {
		return nil, fmt.Errorf("%w: %s is not a %s manifest", ErrTampered, manifestName, ManifestFormat)
	}
	want := make(map[string]ManifestFile, len(m.Files))
	for _, f := range m.Files {
		want[f.Name] = f
	}
	hdr, err := tr.Next()
	if pub != nil || (err == nil && hdr.Name == signatureName) {
		if err := checkSignature(tr, hdr, err, mb, pub); err != nil {
			return nil, err
		}
		hdr, err = tr.Next()
	}
	seen := 0
	for ; err == nil; hdr, err = tr.Next() {
		if seen++; seen > maxExportFiles {
			return nil, fmt.Errorf("%w: more than %d files", ErrTampered, maxExportFiles)
		}
		if err := checkFile(tr, hdr, want); err != nil {
			return nil, err
		}
	}
	if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("failed to read the export: %w", err)
	}
	if len(want) > 0 {
		names := make([]string, 0, len(want))
		for n := range want {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%w: %d listed files missing (%s...)", ErrTampered, len(names), names[0])
	}
	return &m, nil
}

func checkSignature(tr *tar.Reader, hdr *tar.Header, err error, manifest []byte, pub ed25519.PublicKey) error {
	if err != nil || hdr.Name != signatureName {
		return ErrUnsigned
	}
	if hdr.Size > 256 {
		return ErrBadSignature
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return fmt.Errorf("failed to read the signature: %w", err)
	}
	if pub == nil {
		return nil // read past it; nothing to check it with
	}
	sig, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || !ed25519.Verify(pub, signed(manifest), sig) {
		return ErrBadSignature
	}
	return nil
}

func checkFile(tr *tar.Reader, hdr *tar.Header, want map[string]ManifestFile) error {
	mf, ok := want[hdr.Name]
	if !ok || hdr.Typeflag != tar.TypeReg || hdr.Size != mf.Size {
		return fmt.Errorf("%w: %q is not listed as it is", ErrTampered, hdr.Name)
	}
	delete(want, hdr.Name)
	h := sha256.New()
	if _, err := io.Copy(h, tr); err != nil {
		return fmt.Errorf("failed to read %q: %w", hdr.Name, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sum != mf.SHA256 {
		return fmt.Errorf("%w: %q has sha256 %s, the manifest says %s", ErrTampered, hdr.Name, sum, mf.SHA256)
	}
	if dir, name := path.Split(hdr.Name); dir == "objects/" && name != "sha256-"+sum {
		return fmt.Errorf("%w: object %q does not hash to its name", ErrTampered, hdr.Name)
	}
	return nil
}

// next reads the next entry of tr, which must be name, up to max bytes.
func next(tr *tar.Reader, name string, max int64) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("failed to read the export: %w", err)
	}
	if hdr.Name != name || hdr.Size > max {
		return nil, fmt.Errorf("%w: the first file is %q, want %s", ErrTampered, hdr.Name, name)
	}
	return io.ReadAll(tr)
}
