package baseline

import "io"

// Screen reads only the header at the start of a baseline from r and
// checks what it can without the payload: the signature (which covers the
// header record and the payload's length and digest) by opts.VerifyKey,
// then opts.Binding. It returns the authenticated header, so that a caller
// choosing among many candidates (referrer.Pull) can rank them by signed
// serial and fetch only the best ones whole. It reads at most the header
// (a few MiB at most: the record's bound), never the payload, and proves
// nothing about the payload: a screened baseline must still be read in
// full (OpenFile), which checks the digest.
func Screen(r io.Reader, opts ReadOptions) (*Header, error) {
	maxSize, _, err := opts.limits()
	if err != nil {
		return nil, err
	}
	h, err := readSizedHeader(r, -1, maxSize)
	if err != nil {
		return nil, err
	}
	if err := verify(h, opts.VerifyKey); err != nil {
		return nil, err
	}
	var meta Header
	if h.version >= 2 {
		m, err := parseRecord(h.record)
		if err != nil {
			return nil, err
		}
		meta = *m
	}
	if err := opts.Binding.Check(&meta); err != nil {
		return nil, err
	}
	return &meta, nil
}
