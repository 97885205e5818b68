# cairn's container image: the static binary FROM scratch, run as an
# unprivileged user (65532) with its data in /data. No registry and no
# toolchain image are needed: `make image` builds the binaries (make
# release) and then this image; TARGETARCH picks dist/cairn-linux-<arch>.
#
#   docker run -d --name cairn -p 8500:8500 -p 8600:8600/udp cairn:<version>
#
# The default command is a single server; pass your own flags to run a
# client or a member of a bigger cluster. Features that change the host
# (VIP data planes: nftables/IPVS) need root and NET_ADMIN: run those
# agents with --user 0 --cap-add NET_ADMIN --network host.
FROM scratch
ARG TARGETARCH=amd64
COPY dist/cairn-linux-${TARGETARCH} /bin/cairn
# The data dir, owned by the user the agent runs as (scratch has no mkdir).
COPY --chown=65532:65532 dist/.data /data
USER 65532:65532
EXPOSE 8500 8600/tcp 8600/udp 8301/tcp 8301/udp 8300
VOLUME ["/data"]
ENTRYPOINT ["/bin/cairn"]
CMD ["agent", "-server", "-bootstrap-expect", "1", "-data-dir", "/data", "-client", "0.0.0.0"]
