# The demo app's image: the static hello binary (CGO_ENABLED=0) on scratch,
# the page baked in as the seed had it (mode 0600, owned by the app's
# numeric user), and a static busybox so that the walkthrough can tamper
# with the page the way an attacker with a shell would
# (`podman exec ... /bin/busybox sh -c 'echo Hacked > /www/index.html'`).
# Nothing is pulled from a registry. scripts/images.sh (`make images`) makes
# the build context: ./hello, ./busybox (Debian's busybox-static) and
# ./www/index.html with mode 0600 (COPY keeps the modes of the context files;
# --chmod is avoided: the classic docker builder does not have it).
#
# The page is in the image, not written at start: every container of the
# image then has the same file, so a fresh container matches the sidecar's
# baseline (a page written at start would get new inode and times each time).
FROM scratch
COPY hello /hello
COPY busybox /bin/busybox
COPY --chown=65532:65532 www /www
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/hello"]
CMD ["--dir=/www", "--addr=:8080"]
LABEL org.opencontainers.image.title="hello" \
      org.opencontainers.image.description="podfim's demo app: serves /www (Hello, world!) as a non-root user" \
      org.opencontainers.image.source="https://github.com/podfim/podfim"
