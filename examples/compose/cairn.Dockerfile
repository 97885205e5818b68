# cairn for the compose example: the static binary alone. It runs as root
# here: the nodes read the Docker socket, write nftables rules (NET_ADMIN)
# and answer DNS on port 53. The release image (../../Dockerfile) runs as
# a non-root user.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/cairn"]
