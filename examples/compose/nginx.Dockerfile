# nginx (this host's binary and libraries), cairn for `cairn template`,
# and busybox's sh to start both (start.sh) and run the template's
# commands.
FROM scratch
COPY rootfs/ /
ENV PATH=/bin:/usr/sbin:/usr/bin
ENTRYPOINT ["/bin/sh", "/etc/nginx/start.sh"]
