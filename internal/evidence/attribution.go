package evidence

// Method says how the processes of an Attribution were found: the
// "attribution" field of a finding's log line, Event and webhook.
type Method string

// Methods. Attribution is best effort and says which kind it is: it never
// names a process without saying why.
const (
	// MethodOpenForWrite: the processes had the changed inode open for
	// writing when the finding was handled (read from /proc/<pid>/fd and
	// fdinfo flags). The writer, unless it closed the file already.
	MethodOpenForWrite Method = "open-for-write"
	// MethodRecentProcess: no process had it open for writing; these are
	// the app's processes that started since the last check. Candidates,
	// not proof.
	MethodRecentProcess Method = "recent-process"
	// MethodUnknown: neither; the writer has exited (or wrote through
	// /proc/<pid>/root from outside the container).
	MethodUnknown Method = "unknown"
)

// Process is a process of the app container named by an attribution.
// Exe and Cmdline are the app's to choose: Cmdline is bounded and escaped
// (Escape), Exe is raw and must be quoted by whoever prints it.
type Process struct {
	PID     int    `json:"pid"`
	PPID    int    `json:"ppid,omitempty"`
	UID     int    `json:"uid"`
	Exe     string `json:"exe,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// Attribution is who may have written a file.
type Attribution struct {
	Method    Method    `json:"method"`
	Processes []Process `json:"processes,omitempty"`
	// Omitted counts the processes (or descriptors) over the bounds that
	// were not looked at: a non-zero value means the answer may be
	// incomplete.
	Omitted int `json:"omitted,omitempty"`
}
