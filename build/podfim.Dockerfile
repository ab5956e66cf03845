# The podfim image: one static binary (CGO_ENABLED=0) on scratch. Nothing is
# pulled from a registry. The build context is made by scripts/images.sh
# (`make images`), which puts the binary at ./podfim.
#
# The sidecar runs as uid 0 with every capability dropped but the few it
# needs (SYS_PTRACE, KILL, DAC_READ_SEARCH; CHOWN, FOWNER, DAC_OVERRIDE for
# restore): capabilities added to a non-root container are not effective
# (Kubernetes sets no ambient capabilities), so a numeric non-root user would
# leave it unable to read the app's /proc/<pid>/root.
FROM scratch
COPY podfim /podfim
USER 0:0
ENTRYPOINT ["/podfim"]
CMD ["sidecar"]
LABEL org.opencontainers.image.title="podfim" \
      org.opencontainers.image.description="file integrity monitoring for Kubernetes pods (sidecar and CLI)" \
      org.opencontainers.image.source="https://github.com/podfim/podfim"
