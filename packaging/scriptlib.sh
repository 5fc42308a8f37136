# Shared by the deb maintainer scripts and the rpm scriptlets (packaging/build pastes this file
# into each of them: a maintainer script cannot source a file of its own package reliably).
# POSIX sh. Works with systemd running, and without it (chroot, container, debootstrap).

# Creates the vnetd system user and group if missing: systemd-sysusers (works offline too),
# else useradd (passwd), else adduser.
vnetd_create_user() {
    getent passwd vnetd >/dev/null 2>&1 && return 0
    if command -v systemd-sysusers >/dev/null 2>&1 && [ -f /usr/lib/sysusers.d/vnetd.conf ]; then
        systemd-sysusers vnetd.conf && getent passwd vnetd >/dev/null 2>&1 && return 0
    fi
    if command -v useradd >/dev/null 2>&1; then
        getent group vnetd >/dev/null 2>&1 || groupadd --system vnetd
        useradd --system --gid vnetd --home-dir /var/lib/vnetd --no-create-home \
            --shell /usr/sbin/nologin --comment "vnetd province node" vnetd
    elif command -v adduser >/dev/null 2>&1; then
        adduser --system --group --home /var/lib/vnetd --no-create-home \
            --shell /usr/sbin/nologin --gecos "vnetd province node" vnetd
    else
        echo "vnetd: cannot create the vnetd user (no systemd-sysusers, useradd or adduser)" >&2
        return 1
    fi
}

# Creates /var/lib/vnetd (0700 vnetd:vnetd) if missing. Never touches what is inside it.
vnetd_create_dirs() {
    if command -v systemd-tmpfiles >/dev/null 2>&1 && [ -f /usr/lib/tmpfiles.d/vnetd.conf ]; then
        systemd-tmpfiles --create vnetd.conf >/dev/null 2>&1 || true
    fi
    if [ ! -d /var/lib/vnetd ]; then
        install -d -m 0700 -o vnetd -g vnetd /var/lib/vnetd
    fi
}

# The packaged config is readable by the daemon's group only (it names the database; the keys
# are in the database). dpkg unpacks it root:root 0640 before the group exists.
vnetd_config_perms() {
    [ -f /etc/vnetd/vnetd.toml ] || return 0
    if command -v dpkg-statoverride >/dev/null 2>&1 && dpkg-statoverride --list /etc/vnetd/vnetd.toml >/dev/null 2>&1; then
        return 0 # the administrator's choice
    fi
    chgrp vnetd /etc/vnetd/vnetd.toml
    chmod 0640 /etc/vnetd/vnetd.toml
}

vnetd_systemd_running() {
    [ -d /run/systemd/system ]
}
