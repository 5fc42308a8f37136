//! Key rotation against the running binary (spec 2.6, 4.3 KeyUpdate, 9 `peer set-key`, 11 Keys):
//! which keys verify when, grace periods, the no-op repeat, refusals, and that no key leaks.

use crate::fields::*;
use crate::harness::*;
use std::time::Duration;
use vnetd::crypto::TdesKey;

const VNET: &str = "ProvinceForVNet";

const K2: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0aabbccddeeff0011";
const K3: &str = "7766554433221100ffeeddccbbaa99887766554433221100";
const IV2: &str = "1112131415161718";
const PW: &str = "s3cret-Pass";

fn key_update(d: &Daemon, sign_with: &str, refresh: &str, new_key: &str, iv: &str, effect: &str) -> Resp {
    let v = enc(sign_with, new_key);
    d.call_named(VNET, "KeyUpdate", sign_with, KEY_UPDATE, &[
        ("SrcDeviceNo", CENTRE_ID), ("KeyRefreshType", refresh), ("UpdateKeyValue", &v), ("DESInitialValue", iv), ("EffectTimeStamp", effect),
    ])
}

/// The Result of a centre call signed with `key_hex`: -1 (no such user) means the envelope passed.
fn centre_probe(d: &Daemon, key_hex: &str) -> i32 {
    d.call(VNET, "GetUserinfo", key_hex, &[("SrcDeviceNo", CENTRE_ID), ("VNetUserID", "359999999999")]).result()
}

fn centre_probe_with(d: &Daemon, key: &TdesKey) -> i32 {
    d.call_with_key(VNET, "GetUserinfo", key, &[("SrcDeviceNo", CENTRE_ID), ("VNetUserID", "359999999999")]).result()
}

/// UserAuth signed with `key_hex`, the password encrypted under `enc_key_hex`.
fn sp_auth(d: &Daemon, key_hex: &str, enc_key_hex: &str, account: &str) -> i32 {
    let pw = enc(enc_key_hex, PW);
    d.call("ProvinceForSP", "UserAuth", key_hex, &[
        ("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", account), ("Password", &pw), ("UserIP", ""),
    ])
    .result()
}

fn bss_probe(d: &Daemon, key_hex: &str) -> i32 {
    d.call("ProvinceForBSS", "UserStatusChange", key_hex, &[
        ("SrcDeviceNo", BSS_ID), ("VNetUserID", "359999999999"), ("Status", "01"), ("Reason", ""), ("TransactionID", "PROBE"),
    ])
    .result()
}

/// The `peer list` row of a peer.
fn peer_row(d: &Daemon, id: &str) -> std::collections::HashMap<String, String> {
    d.listing(&["peer", "list"]).into_iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no peer {id}"))
}

fn versions(d: &Daemon, id: &str) -> (String, String) {
    let r = peer_row(d, id);
    (r["key_version"].clone(), r["key_versions"].clone())
}

/// No key (either case) in the daemon log or in `peer list`.
fn assert_no_key_material(d: &Daemon, keys: &[&str]) {
    let log = d.log();
    let list = d.ok(&["peer", "list"]);
    for k in keys {
        for form in [k.to_ascii_lowercase(), k.to_ascii_uppercase()] {
            assert!(!log.contains(&form), "key {form} in the daemon log");
            assert!(!list.contains(&form), "key {form} in peer list:\n{list}");
        }
    }
}

/// A 01 user with password PW, made with the CLI; returns its VNetUserID.
fn open_user(d: &Daemon, account: &str) -> String {
    let out = d.cli_stdin(&["user", "add", "--account-type", "01", "--account", account, "--city-code", "0591", "--password-stdin"], &format!("{PW}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn key_update_scheduled_keeps_the_old_key_for_the_grace_period() {
    let mut d = Daemon::with_peers(true);
    assert_eq!(K2.len(), 48);
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1);
    assert_eq!(centre_probe(&d, K2), -21548, "not yet a key");
    let r = key_update(&d, CENTRE_KEY, "1", K2, "", "");
    assert_eq!((r.result(), r.get("ErrDescription")), (0, ""), "{:?}", r.fields);
    assert_eq!(r.order, ["Result", "ErrDescription"]);
    // In effect at once; the old key still verifies during key_grace_h (24 h).
    assert_eq!(centre_probe(&d, K2), -1, "new key");
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1, "old key in the grace period");
    assert_eq!(versions(&d, CENTRE_ID), ("2".to_string(), "2".to_string()));
    d.restart_with_offset(23 * 3600);
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1, "old key after 23 h");
    assert_eq!(centre_probe(&d, K2), -1);
    d.restart_with_offset(25 * 3600);
    assert_eq!(centre_probe(&d, CENTRE_KEY), -21548, "old key after 25 h");
    assert_eq!(centre_probe(&d, K2), -1, "new key after 25 h");
    assert_no_key_material(&d, &[CENTRE_KEY, K2, SP_KEY, BSS_KEY]);
}

#[test]
fn key_update_emergency_ends_the_old_key_at_once() {
    let d = Daemon::with_peers(true);
    let r = key_update(&d, CENTRE_KEY, "2", K2, "", "");
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(centre_probe(&d, K2), -1, "new key");
    assert_eq!(centre_probe(&d, CENTRE_KEY), -21548, "old key refused");
    assert_eq!(versions(&d, CENTRE_ID), ("2".to_string(), "2".to_string()));
    // The next KeyUpdate must be signed (and its key encrypted) under the key now in effect.
    assert_eq!(key_update(&d, CENTRE_KEY, "2", K3, "", "").result(), -21548);
    assert_eq!(key_update(&d, K2, "2", K3, "", "").result(), 0);
    assert_eq!(centre_probe(&d, K3), -1);
    assert_eq!(centre_probe(&d, K2), -21548);
    assert_eq!(versions(&d, CENTRE_ID), ("3".to_string(), "3".to_string()));
    assert_no_key_material(&d, &[CENTRE_KEY, K2, K3]);
}

#[test]
fn key_update_with_a_future_effect_time() {
    let mut d = Daemon::with_peers(true);
    let effect = ts(3600);
    let r = key_update(&d, CENTRE_KEY, "1", K2, "", &effect);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    // Until then the old key is the current one and the new one does not verify.
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1);
    assert_eq!(centre_probe(&d, K2), -21548);
    assert_eq!(versions(&d, CENTRE_ID), ("1".to_string(), "2".to_string()));
    // The same key, IV and effect time again: a no-op answering 0.
    std::thread::sleep(Duration::from_millis(1100));
    let r = key_update(&d, CENTRE_KEY, "1", K2, "", &effect);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(versions(&d, CENTRE_ID), ("1".to_string(), "2".to_string()), "repeat added no version");
    // After the effect time both verify (grace), until 24 h after it.
    d.restart_with_offset(3600 + 60);
    assert_eq!(centre_probe(&d, K2), -1, "new key in effect");
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1, "old key in the grace period");
    assert_eq!(versions(&d, CENTRE_ID), ("2".to_string(), "2".to_string()));
    d.restart_with_offset(3600 + 25 * 3600);
    assert_eq!(centre_probe(&d, CENTRE_KEY), -21548);
    assert_eq!(centre_probe(&d, K2), -1);
    assert_no_key_material(&d, &[CENTRE_KEY, K2]);
}

#[test]
fn key_update_emergency_with_a_future_effect_time() {
    let mut d = Daemon::with_peers(true);
    let r = key_update(&d, CENTRE_KEY, "2", K2, "", &ts(3600));
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1, "old key until the effect time");
    assert_eq!(centre_probe(&d, K2), -21548);
    d.restart_with_offset(3600 + 60);
    assert_eq!(centre_probe(&d, K2), -1);
    assert_eq!(centre_probe(&d, CENTRE_KEY), -21548, "no grace after an emergency rotation");
}

#[test]
fn key_update_new_iv_and_iv_kept() {
    let d = Daemon::with_peers(true);
    let r = key_update(&d, CENTRE_KEY, "2", K2, IV2, "");
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    let k2_iv2 = TdesKey::from_hex(K2, IV2).unwrap();
    assert_eq!(centre_probe_with(&d, &k2_iv2), -1, "new key with its IV");
    assert_eq!(centre_probe(&d, K2), -21548, "new key with the old IV");
    // Without DESInitialValue the current IV is kept.
    let v = k2_iv2.encrypt_b64(K3.as_bytes());
    let r = d.call_with_key(VNET, "KeyUpdate", &k2_iv2, &[
        ("SrcDeviceNo", CENTRE_ID), ("KeyRefreshType", "2"), ("UpdateKeyValue", &v), ("DESInitialValue", ""), ("EffectTimeStamp", ""),
    ]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(centre_probe_with(&d, &TdesKey::from_hex(K3, IV2).unwrap()), -1, "K3 with the kept IV");
    assert_eq!(centre_probe(&d, K3), -21548, "K3 with the default IV");
    assert_no_key_material(&d, &[CENTRE_KEY, K2, K3]);
}

#[test]
fn key_update_refusals() {
    let d = Daemon::with_peers(true);
    let cases: [(&str, &str, &str, &str, i32); 12] = [
        ("1", "abc", "", "", -21500),
        ("1", &K2[..47], "", "", -21500),
        ("1", "0f1e2d3c4b5a69788796a5b4c3d2e1f0aabbccddeeff00112", "", "", -21500),
        ("1", "gggggggggggggggggggggggggggggggggggggggggggggggg", "", "", -21500),
        ("1", " 0f1e2d3c4b5a69788796a5b4c3d2e1f0aabbccddeeff001", "", "", -21500),
        ("3", K2, "", "", -21547),
        ("", K2, "", "", -21547),
        ("0", K2, "", "", -21547),
        ("1", K2, "xyz", "", -21500),
        ("1", K2, "111213141516171", "", -21500),
        ("1", K2, "", "2024-13-01 00:00:00", -21500),
        ("1", K2, "", "tomorrow", -21500),
    ];
    for (refresh, plain, iv, effect, code) in cases {
        let r = key_update(&d, CENTRE_KEY, refresh, plain, iv, effect);
        assert_eq!(r.result(), code, "{refresh:?} {plain:?} {iv:?} {effect:?}: {:?}", r.fields);
        assert!(!r.get("ErrDescription").is_empty());
    }
    let call = |v: &str| {
        d.call_named(VNET, "KeyUpdate", CENTRE_KEY, KEY_UPDATE, &[("SrcDeviceNo", CENTRE_ID), ("KeyRefreshType", "1"), ("UpdateKeyValue", v)])
    };
    assert_eq!(call("").result(), -21500, "missing UpdateKeyValue");
    assert_eq!(call("!!!").result(), -21557, "not Base64");
    assert_eq!(call(&enc(CENTRE_KEY, "")).result(), -21555, "empty");
    // Signed with a key that is not the centre's.
    assert_eq!(key_update(&d, K2, "1", K3, "", "").result(), -21548);
    // Only the centre may call it.
    let v = enc(BSS_KEY, K2);
    let r = d.call_named(VNET, "KeyUpdate", BSS_KEY, KEY_UPDATE, &[("SrcDeviceNo", BSS_ID), ("KeyRefreshType", "1"), ("UpdateKeyValue", &v)]);
    assert_eq!(r.result(), -20003);
    let v = enc(SP_KEY, K2);
    let r = d.call_named(VNET, "KeyUpdate", SP_KEY, KEY_UPDATE, &[("SrcDeviceNo", SP_ID), ("KeyRefreshType", "1"), ("UpdateKeyValue", &v)]);
    assert_eq!(r.result(), -20001, "an SPID is no DeviceNo: unknown caller");
    // Nothing was stored; the BSS and SP keys did not change either.
    assert_eq!(versions(&d, CENTRE_ID), ("1".to_string(), "1".to_string()));
    assert_eq!(versions(&d, BSS_ID), ("1".to_string(), "1".to_string()));
    assert_eq!(versions(&d, SP_ID), ("1".to_string(), "1".to_string()));
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1);
    assert_no_key_material(&d, &[CENTRE_KEY, K2, K3]);
}

#[test]
fn key_update_changes_the_key_of_outbound_password_messages() {
    let d = Daemon::with_peers(true);
    let id = open_user(&d, "fzkey0001");
    assert_eq!(key_update(&d, CENTRE_KEY, "1", K2, "", "").result(), 0);
    let pw = enc(BSS_KEY, "new-Pass-2");
    let r = d.call("ProvinceForBSS", "PasswordReset", BSS_KEY, &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("NewPassword", &pw), ("TransactionID", "R1")]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    let rows = d.outbox_for_user("PasswordReset", &id);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key_version, Some(2), "the newest centre key in effect");
    assert_eq!(key(K2).decrypt_b64_str(rows[0].field("NewPassword")).unwrap(), "new-Pass-2");
    assert_ne!(key(CENTRE_KEY).decrypt_b64_str(rows[0].field("NewPassword")).ok().as_deref(), Some("new-Pass-2"));
}

#[test]
fn peer_set_key_takes_effect_within_2_seconds() {
    let mut d = Daemon::with_peers(false);
    let account = "fzkey0002";
    open_user(&d, account);
    assert_eq!(sp_auth(&d, SP_KEY, SP_KEY, account), 0);
    assert_eq!(sp_auth(&d, K2, K2, account), -21548);
    let out = d.ok(&["peer", "set-key", SP_ID, "--key", K2]);
    assert!(!out.contains(K2), "set-key echoes the key: {out}");
    assert!(wait_until(Duration::from_secs(2), || sp_auth(&d, K2, K2, account) == 0), "new SP key not in effect within 2 s");
    // An enc field is decrypted with the key that verified the Authenticator.
    assert_eq!(sp_auth(&d, SP_KEY, SP_KEY, account), 0, "old key in the grace period");
    assert_ne!(sp_auth(&d, K2, SP_KEY, account), 0, "password under the old key, signed with the new");
    assert_eq!(versions(&d, SP_ID), ("2".to_string(), "2".to_string()));
    // A BSS key with a later effect time: the old one stays current until then.
    d.ok(&["peer", "set-key", BSS_ID, "--key", K3, "--effect", &ts(3600)]);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(bss_probe(&d, BSS_KEY), -20504, "old BSS key until the effect time");
    assert_eq!(bss_probe(&d, K3), -21548, "new BSS key not yet");
    assert_eq!(versions(&d, BSS_ID), ("1".to_string(), "2".to_string()));
    // Past both grace periods only the new keys verify.
    d.restart_with_offset(26 * 3600);
    assert_eq!(sp_auth(&d, SP_KEY, SP_KEY, account), -21548);
    assert_eq!(sp_auth(&d, K2, K2, account), 0);
    assert_eq!(bss_probe(&d, BSS_KEY), -21548);
    assert_eq!(bss_probe(&d, K3), -20504);
    assert_eq!(versions(&d, BSS_ID), ("2".to_string(), "2".to_string()));
    // set-key refuses a malformed key and an unknown peer.
    assert!(!d.cli(&["peer", "set-key", SP_ID, "--key", "abc"]).status.success());
    assert!(!d.cli(&["peer", "set-key", "35009999", "--key", K3]).status.success());
    assert_no_key_material(&d, &[SP_KEY, K2, K3, BSS_KEY]);
}

#[test]
fn key_update_repeated_with_an_empty_effect_time_is_a_no_op() {
    let d = Daemon::with_peers(true);
    assert_eq!(key_update(&d, CENTRE_KEY, "1", K2, "", "").result(), 0);
    assert_eq!(versions(&d, CENTRE_ID), ("2".to_string(), "2".to_string()));
    // The centre resends the same KeyUpdate (its answer was lost), signed with either key.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(key_update(&d, CENTRE_KEY, "1", K2, "", "").result(), 0);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(key_update(&d, K2, "1", K2, "", "").result(), 0);
    assert_eq!(versions(&d, CENTRE_ID), ("2".to_string(), "2".to_string()), "no new version for the same key");
    // So the old key keeps its grace period.
    assert_eq!(centre_probe(&d, CENTRE_KEY), -1, "old key still in its grace period");
    assert_eq!(centre_probe(&d, K2), -1);
    // The same for `peer set-key` run twice with the same key.
    d.ok(&["peer", "set-key", SP_ID, "--key", K3]);
    std::thread::sleep(Duration::from_millis(1100));
    let out = d.ok(&["peer", "set-key", SP_ID, "--key", K3]);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(versions(&d, SP_ID), ("2".to_string(), "2".to_string()));
}
