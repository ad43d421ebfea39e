//! What all filter slots may hold at once, checked when a generation is
//! built: the engine's pooling allocator has fixed numbers of instance,
//! memory and table slots for the whole process, and `memory_limit ×
//! max_instances` summed over every filter entry is what the filters could
//! make the process hold in the worst case. Both count the slots the
//! previous generation keeps alive while it drains. A configuration that
//! could exceed either is refused with the biggest contributors named.

use std::path::Path;

/// The engine's pool: component instances, memories and tables.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    pub instances: usize,
    pub memories: usize,
    pub tables: usize,
}

/// What one filter entry may hold at once.
#[derive(Debug, Clone)]
pub struct Demand {
    /// `routes[0].filters[1] (auth)`.
    pub label: String,
    pub instances: usize,
    /// Memories and tables one instance of its plugin needs.
    pub memories_each: usize,
    pub tables_each: usize,
    /// Linear-memory cap of one instance, bytes.
    pub memory_limit: usize,
}

impl Demand {
    fn memory(&self) -> usize {
        self.memory_limit.saturating_mul(self.instances)
    }
}

/// Where the memory budget came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub bytes: usize,
    pub source: String,
}

/// Why the demands do not fit; `worst` indexes the biggest contributor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overcommit {
    pub worst: usize,
    pub message: String,
}

/// Check `demands` (the new generation's, then those still held by the
/// draining one) against the pool and the budget.
pub fn check(demands: &[Demand], pool: Pool, budget: &Budget) -> Result<(), Overcommit> {
    type Measure = fn(&Demand) -> usize;
    type Show = fn(usize) -> String;
    let dimensions: [(&str, usize, Measure, Show); 4] = [
        ("filter instances", pool.instances, |d| d.instances, |n| n.to_string()),
        (
            "Wasm memories",
            pool.memories,
            |d| d.instances * d.memories_each,
            |n| n.to_string(),
        ),
        (
            "Wasm tables",
            pool.tables,
            |d| d.instances * d.tables_each,
            |n| n.to_string(),
        ),
        ("bytes of Wasm memory", budget.bytes, Demand::memory, human_bytes),
    ];
    for (what, limit, of, show) in dimensions {
        let total: usize = demands.iter().map(of).fold(0, usize::saturating_add);
        if total <= limit {
            continue;
        }
        let mut ranked: Vec<usize> = (0..demands.len()).collect();
        ranked.sort_by_key(|&i| std::cmp::Reverse(of(&demands[i])));
        let top: Vec<String> = ranked
            .iter()
            .take(3)
            .map(|&i| format!("{} {}", demands[i].label, show(of(&demands[i]))))
            .collect();
        let over = if what.starts_with("bytes") {
            format!("the memory budget of {} ({})", show(limit), budget.source)
        } else {
            format!("the engine's pool of {limit}")
        };
        return Err(Overcommit {
            worst: ranked[0],
            message: format!(
                "the filters may hold {} {what} at once (max_instances × memory_limit per filter entry, \
                 summed, with the previous generation's while it drains), over {over}; the largest: {} — \
                 lower max_instances or memory_limit{}",
                show(total),
                top.join(", "),
                if what.starts_with("bytes") {
                    ", or set [sandbox] memory_budget"
                } else {
                    ""
                },
            ),
        });
    }
    Ok(())
}

/// `1.5 GiB`, `256 MiB`, `512 KiB`.
fn human_bytes(n: usize) -> String {
    let n = n as f64;
    match n {
        n if n >= (1u64 << 30) as f64 => format!("{:.1} GiB", n / (1u64 << 30) as f64),
        n if n >= (1 << 20) as f64 => format!("{:.0} MiB", n / (1 << 20) as f64),
        n => format!("{:.0} KiB", n / 1024.0),
    }
}

/// The default memory budget: the cgroup's limit (v2 `memory.max`, or v1
/// `memory.limit_in_bytes`) when one is set, else physical memory.
pub fn detect_budget() -> Budget {
    let read = |p: &str| std::fs::read_to_string(Path::new(p)).ok();
    budget_from(
        read("/sys/fs/cgroup/memory.max").as_deref(),
        read("/sys/fs/cgroup/memory/memory.limit_in_bytes").as_deref(),
        read("/proc/meminfo").as_deref(),
    )
}

fn budget_from(cgroup_v2: Option<&str>, cgroup_v1: Option<&str>, meminfo: Option<&str>) -> Budget {
    let physical = meminfo.and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<usize>().ok())
            .map(|kb| kb * 1024)
    });
    let limit = |text: Option<&str>| text.and_then(|t| t.trim().parse::<usize>().ok());
    // cgroup v1 reports "no limit" as a huge number.
    let v1 = limit(cgroup_v1).filter(|&n| physical.is_none_or(|p| n < p));
    match (limit(cgroup_v2), v1, physical) {
        (Some(n), _, _) => Budget {
            bytes: n,
            source: "cgroup memory.max".into(),
        },
        (None, Some(n), _) => Budget {
            bytes: n,
            source: "cgroup memory.limit_in_bytes".into(),
        },
        (None, None, Some(n)) => Budget {
            bytes: n,
            source: "physical memory".into(),
        },
        (None, None, None) => Budget {
            bytes: usize::MAX,
            source: "unknown".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(label: &str, instances: usize, memory_mib: usize) -> Demand {
        Demand {
            label: label.into(),
            instances,
            memories_each: 1,
            tables_each: 1,
            memory_limit: memory_mib << 20,
        }
    }

    const POOL: Pool = Pool {
        instances: 1000,
        memories: 1000,
        tables: 2000,
    };

    #[test]
    fn the_budget_names_the_biggest_contributors() {
        let budget = Budget {
            bytes: 256 << 20,
            source: "cgroup memory.max".into(),
        };
        let fits = [
            demand("a", 8, 8),
            demand("b", 8, 8),
            demand("c", 8, 8),
            demand("d", 8, 8),
        ];
        assert_eq!(check(&fits, POOL, &budget), Ok(()));
        let over = [demand("a", 64, 16), demand("b", 8, 8), demand("c", 64, 4)];
        let e = check(&over, POOL, &budget).unwrap_err();
        assert_eq!(e.worst, 0);
        assert!(e.message.contains("1.3 GiB bytes of Wasm memory"), "{}", e.message);
        assert!(e.message.contains("256 MiB (cgroup memory.max)"), "{}", e.message);
        assert!(
            e.message.contains("the largest: a 1.0 GiB, c 256 MiB, b 64 MiB"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_engine_pool_is_checked() {
        let budget = Budget {
            bytes: usize::MAX,
            source: "x".into(),
        };
        let e = check(&[demand("a", 600, 1), demand("b", 500, 1)], POOL, &budget).unwrap_err();
        assert!(e.message.contains("1100 filter instances"), "{}", e.message);
        let mut many_memories = demand("m", 300, 1);
        many_memories.memories_each = 4;
        let e = check(&[many_memories], POOL, &budget).unwrap_err();
        assert!(e.message.contains("1200 Wasm memories"), "{}", e.message);
    }

    #[test]
    fn budget_comes_from_the_cgroup_then_physical_memory() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree: 1 kB\n";
        let b = budget_from(Some("268435456\n"), None, Some(meminfo));
        assert_eq!((b.bytes, b.source.as_str()), (256 << 20, "cgroup memory.max"));
        let b = budget_from(Some("max\n"), None, Some(meminfo));
        assert_eq!((b.bytes, b.source.as_str()), (24_000_000 * 1024, "physical memory"));
        let b = budget_from(None, Some("9223372036854771712"), Some(meminfo));
        assert_eq!(b.source, "physical memory");
        let b = budget_from(None, Some("536870912"), Some(meminfo));
        assert_eq!(
            (b.bytes, b.source.as_str()),
            (512 << 20, "cgroup memory.limit_in_bytes")
        );
    }
}
