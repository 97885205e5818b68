# The demo web app (a static Go binary) and, to look names up from inside
# the container, this host's dig with its libraries.
FROM scratch
COPY rootfs/ /
EXPOSE 8080
ENTRYPOINT ["/bin/web"]
