// Package image owns reading a container image for a baseline: it resolves
// a reference (docker://, oci:, oci-archive:, docker-archive:) with
// go-containerregistry, checks the manifest, configuration and layer
// digests, and applies the layers in order, as a container runtime unpacks
// them, to a Tree that keeps every object's attributes and content hash but
// never its content. It is the image's counterpart of scan: what a scan
// reads from a tree, a Tree builds from layers, and both give attr.Entry
// records in attr.ComparePaths order with the policy's attributes.
//
// A Tree models the file system the layers build: directories holding
// named objects, hard links sharing one object. Whiteouts and opaque
// directories remove what the layers below put there; hostile names
// (absolute, "..", through a symlink, overlong) stop the build with
// ErrUnsafe. Only what an image fixes is recorded (attr.ImageStable), and
// of that, nothing the runtimes disagree on (a parent a layer leaves out,
// an ACL the mode contradicts).
//
// Memory grows with entries (Limits.MaxFiles), not with bytes: layers are
// streamed, decompressed ahead in a goroutine, and hashed as they pass;
// nothing is written to disk. docs/image-baselines.md has the details.
package image
