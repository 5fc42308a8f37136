//! The operation table: every message declared in `crate::spec::incoming` bound to its handler
//! (ENGINEERING.md "declare each operation once"). A binding names the message's module, so the
//! handler's typed request is the message's `Request` and a binding for an undeclared message
//! does not compile; a declared message without a binding fails the test below.

use crate::services::{access as acc, billing as bl, passport as pp, province_for_vnet as vnet, sso};
use crate::services::{Check, Handler, Op};
use crate::spec::incoming::{self as m, Incoming, INCOMING};
use crate::spec::Service;
use std::sync::LazyLock;

/// A message's handler and stage-2 check, reading the message's typed request from the call.
struct Binding {
    key: &'static str,
    handler: Handler,
    check: Option<Check>,
}

macro_rules! bind {
    ($m:ident => $handler:path) => {
        Binding { key: stringify!($m), handler: |app, call| $handler(app, call, call.request::<m::$m::Request>()), check: None }
    };
    ($m:ident => $handler:path, check: $check:path) => {
        Binding { check: Some(|call, clock| $check(&call.request::<m::$m::Request>(), clock)), ..bind!($m => $handler) }
    };
}

static BINDINGS: &[Binding] = &[
    bind!(UserAuth => pp::user_auth),
    bind!(PhoneNumAuth => pp::phone_num_auth),
    bind!(IPAuth => acc::ip_auth),
    bind!(GetUserinfo => pp::get_userinfo),
    bind!(MPhoneRegistry => pp::mphone_registry),
    bind!(GetTime => pp::get_time),
    bind!(TicketValidate => sso::ticket_validate),
    bind!(UserLogout => sso::user_logout),
    bind!(PaymentQuery => sso::payment_query),
    bind!(ServiceAuth => bl::service_auth),
    bind!(Order => bl::order),
    bind!(CancelOrder => bl::cancel_order),
    bind!(ReOrder => bl::reorder),
    bind!(Charge => bl::charge),
    bind!(OfflineCharge => bl::offline_charge, check: bl::check_offline_charge),
    bind!(ChargeQuery => bl::charge_query),
    bind!(OrderQuery => bl::order_query),
    bind!(UserOrderQuery => bl::user_order_query),
    bind!(BillQuery => bl::bill_query),
    bind!(Reconcile => bl::reconcile),
    bind!(ReconDetail => bl::recon_detail, check: bl::check_recon_detail),
    bind!(UserOpen => pp::user_open, check: pp::check_user_open),
    bind!(UserModify => pp::user_modify),
    bind!(UserStatusChange => pp::user_status_change),
    bind!(PasswordReset => pp::password_reset),
    bind!(UserInfoQueryV3 => pp::user_info_query),
    bind!(PUserStatusNotify => pp::p_user_status_notify),
    bind!(KeyUpdate => vnet::key_update),
    bind!(RoamAuthV2 => vnet::roam_auth_v2),
    bind!(RoamServiceNotify => vnet::roam_service_notify),
    bind!(OnlineNotify => acc::online_notify),
    bind!(CrossAuth => acc::cross_auth),
];

fn bound(d: &'static Incoming) -> Op {
    let m = d.message;
    let b = BINDINGS.iter().find(|b| b.key == m.key).unwrap_or_else(|| panic!("no handler is bound to message {}", m.key));
    Op {
        service: d.service,
        name: m.name,
        request: d.request,
        response: m.response,
        lists: m.lists,
        authenticated: m.authenticated,
        idempotent: m.idempotent,
        handler: b.handler,
        check: b.check,
        doc: d.doc,
    }
}

/// Every served operation, in declaration order.
pub static OPS: LazyLock<Vec<Op>> = LazyLock::new(|| INCOMING.iter().map(bound).collect());

/// The operation `name` of `service`.
pub fn find(service: Service, name: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.service == service && o.name == name)
}

/// Every operation of a service, in declaration order.
pub fn of(service: Service) -> impl Iterator<Item = &'static Op> {
    OPS.iter().filter(move |o| o.service == service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_exactly_one_handler() {
        for d in INCOMING {
            let n = BINDINGS.iter().filter(|b| b.key == d.message.key).count();
            assert_eq!(n, 1, "message {} has {n} bindings", d.message.key);
        }
        for b in BINDINGS {
            assert!(INCOMING.iter().any(|d| d.message.key == b.key), "{} is bound but served by no service", b.key);
        }
        assert_eq!(OPS.len(), INCOMING.len());
    }
}
