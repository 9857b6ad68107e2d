//! The HTTP calls each registry preset makes, built from its settings (the playbook's
//! `presets.rs` says which settings each one takes and their defaults). The calls are template
//! sources composed from the settings' sources, URL parts URL-encoded when rendered, and are
//! compiled once, when the adapter is built.

use crate::playbook::template::TemplateBuilder;
use crate::playbook::{HttpCall, Template, Templates};

/// A call as template sources: method, URL, body.
type CallSource = (&'static str, String, Option<String>);

/// The deregister and register calls of preset `name`, and the templates they render with.
pub fn calls(name: &str, settings: &[(&'static str, Template)]) -> Result<(HttpCall, HttpCall, Templates), String> {
    let get = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, t)| t.source.as_str());
    let need = |key: &str| get(key).ok_or_else(|| format!("the {name} preset needs `registry.{key}`"));
    let enc = |src: &str| format!("{{% filter urlencode %}}{src}{{% endfilter %}}");
    let address = need("address")?.trim_end_matches('/').to_string();
    let (out, back): (CallSource, CallSource) = match name {
        "consul" => {
            let url = format!("{address}/v1/agent/service/maintenance/{}", enc(need("service_id")?));
            (
                (
                    "PUT",
                    format!("{url}?enable=true&reason=tranche%20release%20{{{{ version | urlencode }}}}"),
                    None,
                ),
                ("PUT", format!("{url}?enable=false"), None),
            )
        }
        "nacos" => {
            let mut q = format!(
                "serviceName={}&ip={}&port={}",
                enc(need("service_name")?),
                enc(need("ip")?),
                enc(need("port")?)
            );
            for (key, param) in [
                ("namespace", "namespaceId"),
                ("group", "groupName"),
                ("cluster", "clusterName"),
            ] {
                if let Some(v) = get(key) {
                    q.push_str(&format!("&{param}={}", enc(v)));
                }
            }
            let url = format!("{address}/nacos/v1/ns/instance?{q}");
            (
                ("PUT", format!("{url}&enabled=false"), None),
                ("PUT", format!("{url}&enabled=true"), None),
            )
        }
        "eureka" => {
            let url = format!(
                "{address}/apps/{}/{}/status",
                enc(need("app")?),
                enc(need("instance_id")?)
            );
            (
                ("PUT", format!("{url}?value=OUT_OF_SERVICE"), None),
                ("DELETE", format!("{url}?value=UP"), None),
            )
        }
        "dubbo" => {
            let svc = get("service")
                .map(|s| format!("?service={}", enc(s)))
                .unwrap_or_default();
            (
                ("GET", format!("{address}/offline{svc}"), None),
                ("GET", format!("{address}/online{svc}"), None),
            )
        }
        "etcd" => {
            let k = format!("{{% filter b64encode %}}{}{{% endfilter %}}", need("key")?);
            let v = format!("{{% filter b64encode %}}{}{{% endfilter %}}", need("value")?);
            (
                (
                    "POST",
                    format!("{address}/v3/kv/deleterange"),
                    Some(format!("{{\"key\": \"{k}\"}}")),
                ),
                (
                    "POST",
                    format!("{address}/v3/kv/put"),
                    Some(format!("{{\"key\": \"{k}\", \"value\": \"{v}\"}}")),
                ),
            )
        }
        other => return Err(format!("no registry preset is named {other:?}")),
    };
    let header = get("token").map(|t| match name {
        "consul" => ("X-Consul-Token".to_string(), t.to_string()),
        _ => ("Authorization".to_string(), format!("Bearer {t}")),
    });
    // Errors point at the `registry` settings, where the sources were written.
    let at = &settings[0].1;
    let mut b = TemplateBuilder::default();
    let mut compile = |src: &str| {
        b.add(&at.file, at.pos, src, false)
            .map_err(|d| format!("the {name} preset's calls: {}", d.message))
    };
    let mut call = |(method, url, body): CallSource| -> Result<HttpCall, String> {
        Ok(HttpCall {
            method: method.to_string(),
            url: compile(&url)?,
            headers: match &header {
                Some((name, value)) => vec![(name.clone(), compile(value)?)],
                None => vec![],
            },
            body: body.map(|b| compile(&b)).transpose()?,
            expect_status: vec![],
        })
    };
    let (deregister, register) = (call(out)?, call(back)?);
    Ok((deregister, register, b.build()))
}

#[cfg(test)]
mod tests {
    use crate::http_body::tests::test_release;
    use crate::playbook::RegistrySpec;

    /// Each preset's calls, rendered for host h1 (127.0.0.1) of service demo 2.0.0: method,
    /// URL and body, as the README documents them; defaults filled in, URL parts encoded.
    #[test]
    fn each_preset_renders_its_documented_calls() {
        for (settings, out, back) in [
            (
                "kind: consul\n  service_id: \"web {{ host.name }}\"\n  token: t0k",
                "PUT http://127.0.0.1:8500/v1/agent/service/maintenance/web%20h1?enable=true&reason=tranche%20release%202.0.0 -",
                "PUT http://127.0.0.1:8500/v1/agent/service/maintenance/web%20h1?enable=false -",
            ),
            (
                "kind: nacos\n  address: http://n:8848/\n  port: 8080\n  cluster: c 1",
                "PUT http://n:8848/nacos/v1/ns/instance?serviceName=demo&ip=127.0.0.1&port=8080&clusterName=c%201&enabled=false -",
                "PUT http://n:8848/nacos/v1/ns/instance?serviceName=demo&ip=127.0.0.1&port=8080&clusterName=c%201&enabled=true -",
            ),
            (
                "kind: eureka\n  address: http://e/eureka\n  instance_id: \"{{ host.address }}:demo\"",
                "PUT http://e/eureka/apps/DEMO/127.0.0.1%3Ademo/status?value=OUT_OF_SERVICE -",
                "DELETE http://e/eureka/apps/DEMO/127.0.0.1%3Ademo/status?value=UP -",
            ),
            (
                "kind: dubbo",
                "GET http://127.0.0.1:22222/offline -",
                "GET http://127.0.0.1:22222/online -",
            ),
            (
                "kind: etcd\n  address: http://127.0.0.1:2379\n  key: \"/svc/{{ host.name }}\"\n  value: up",
                r#"POST http://127.0.0.1:2379/v3/kv/deleterange {"key": "L3N2Yy9oMQ=="}"#,
                r#"POST http://127.0.0.1:2379/v3/kv/put {"key": "L3N2Yy9oMQ==", "value": "dXA="}"#,
            ),
        ] {
            let (_dir, r) = test_release(&format!("registry:\n  {settings}\n"));
            let RegistrySpec::Preset { name, settings } = &r.playbook.registry.spec else {
                panic!("not a preset: {settings}")
            };
            let (deregister, register, templates) = super::calls(name, settings).unwrap();
            let ctx = crate::release::template_context(&r.playbook, &r.targets[0], "run", None);
            let show = |c: &crate::playbook::HttpCall| {
                let body = c.body.as_ref().map(|b| templates.render(b, &ctx).unwrap());
                format!(
                    "{} {} {}",
                    c.method,
                    templates.render(&c.url, &ctx).unwrap(),
                    body.as_deref().unwrap_or("-")
                )
            };
            assert_eq!((show(&deregister), show(&register)), (out.to_string(), back.to_string()));
            if *name == "consul" {
                assert_eq!(deregister.headers[0].0, "X-Consul-Token");
                assert_eq!(templates.render(&deregister.headers[0].1, &ctx).unwrap(), "t0k");
            }
        }
    }
}
