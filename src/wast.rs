//! The `.wast` script runner: executes WebAssembly specification test scripts against fnvm's
//! compiler and runtime and counts, per directive, what passed and what failed.
//!
//! Every module in a script goes the production path: `fnvm_compiler::compile` to an artifact,
//! `Module::from_artifact` to load it, then `Store::instantiate` with imports resolved by name
//! through a registry holding the `spectest` host module and the instances the script
//! `register`s. A script runs in one [`Store`], on a thread of its own with a large stack
//! ([`SCRIPT_THREAD_STACK_SIZE`]) for the host side: the text parser and the validator recurse
//! into deeply nested modules. Guest code runs on the store's own guarded stack.
//!
//! A directive that does not behave as the script says is a [`Failure`]; a script that cannot be
//! read or parsed is an error.
//!
//! With [`Isolation::Vm`] every module instance also gets a KVM micro-VM of its own (a `WasmVm`,
//! the same artifact), and `invoke`s, `assert_return`s, `assert_trap`s and `assert_exhaustion`s
//! run in it; a module's start function too. A VM's instance is linked to nothing, so a module
//! with imports (`spectest`, a `register`ed instance), `register` and `get` (reading a global
//! from the host) fail with that reason: the scripts needing one import-free instance at a time
//! run entirely in VMs. Validation directives and `assert_unlinkable` (linking, no code) run as
//! without VMs.

mod spectest;
mod values;

use anyhow::{anyhow, bail, Context, Result};
use fnvm_compiler::{CompileError, CompileOptions};
use fnvm_runtime::kvm::{Kvm, WasmVm, WasmVmConfig, WasmVmError};
use fnvm_runtime::{
    Engine, EngineConfig, Extern, Halt, Instance, InstantiationError, LinkedModule, LoadError,
    Module, Store, Trap, Val,
};
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::token::Id;
use wast::{QuoteWat, Wast, WastDirective, WastExecute, WastInvoke, Wat};

/// Stack size of the thread a script runs on, for parsing, validating and compiling deeply
/// nested modules (guest code, `assert_exhaustion`'s recursion included, runs on the store's
/// guest stack, not this one).
pub const SCRIPT_THREAD_STACK_SIZE: usize = 64 << 20;

/// The outcome of running one or more scripts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Directives that behaved as the script says.
    pub passed: usize,
    /// Directives that did not, in script order.
    pub failures: Vec<Failure>,
}

impl Counts {
    /// Number of failed directives.
    pub fn failed(&self) -> usize {
        self.failures.len()
    }

    /// Adds `other`'s counts and failures to these.
    pub fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failures.extend(other.failures);
    }
}

impl fmt::Display for Counts {
    /// `N passed, N failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed())
    }
}

/// A directive that did not behave as its script says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The script, as it was named to the runner.
    pub file: String,
    /// 1-based line of the directive.
    pub line: usize,
    /// 1-based column of the directive.
    pub column: usize,
    /// The directive's keyword, e.g. `assert_return`.
    pub directive: &'static str,
    /// What happened instead.
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.directive, self.reason
        )
    }
}

/// Where a script's module instances run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// In the script's store, in process.
    #[default]
    Process,
    /// Each in a KVM micro-VM (see the module documentation for what that cannot run).
    Vm,
}

/// Runs the script at `path`.
pub fn run_file(path: &Path) -> Result<Counts> {
    run_file_isolated(path, Isolation::Process)
}

/// Runs the script at `path`, its instances as `isolation` says.
pub fn run_file_isolated(path: &Path, isolation: Isolation) -> Result<Counts> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    run_script_isolated(&path.display().to_string(), text, isolation)
}

/// Runs the script `text`; `file` names it in failures and errors.
pub fn run_script(file: &str, text: String) -> Result<Counts> {
    run_script_isolated(file, text, Isolation::Process)
}

/// Runs the script `text`, its instances as `isolation` says; `file` names it in failures and
/// errors. With [`Isolation::Vm`], fails at once where `/dev/kvm` is unusable.
pub fn run_script_isolated(file: &str, text: String, isolation: Isolation) -> Result<Counts> {
    let name = file.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("wast {file}"))
        .stack_size(SCRIPT_THREAD_STACK_SIZE)
        .spawn(move || run_on_this_thread(&name, &text, isolation))
        .context("spawning the script thread")?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => Err(anyhow!(
            "the script runner panicked on {file}: {}",
            panic_message(&*panic)
        )),
    }
}

fn run_on_this_thread(file: &str, text: &str, isolation: Isolation) -> Result<Counts> {
    let located = |mut e: wast::Error| {
        e.set_path(Path::new(file));
        e.set_text(text);
        anyhow::Error::new(e).context(format!("parsing {file}"))
    };
    // The scripts use confusing Unicode on purpose (names.wast tests exports named with it).
    let mut lexer = Lexer::new(text);
    lexer.allow_confusing_unicode(true);
    let buf = ParseBuffer::new_with_lexer(lexer).map_err(located)?;
    let script = parser::parse::<Wast<'_>>(&buf).map_err(located)?;
    let mut runner = Runner::new(file, text)?;
    if isolation == Isolation::Vm {
        let kvm = Kvm::open().map_err(|e| anyhow!("isolation vm needs /dev/kvm: {e}"))?;
        let config = WasmVmConfig {
            max_memory_pages: runner.engine.config().max_memory_pages,
            max_table_elements: runner.engine.config().max_table_elements,
            ..WasmVmConfig::default()
        };
        runner.vms = Some(Vms {
            kvm,
            config,
            by_instance: Vec::new(),
        });
    }
    for directive in script.directives {
        runner.run(directive);
    }
    Ok(runner.counts)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Where a module's imports come from.
enum Provider {
    /// A host module (`spectest`).
    Host(HashMap<String, Extern>),
    /// A registered instance.
    Instance(Instance),
}

/// Why a module could not be turned into a loaded [`Module`].
#[derive(Debug)]
enum BuildError {
    Compile(CompileError),
    Load(LoadError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Compile(e) => write!(f, "compilation failed: {e}"),
            BuildError::Load(e) => write!(f, "loading the artifact failed: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why a loaded module could not be instantiated.
#[derive(Debug)]
enum InstError {
    /// No registered module provides this import.
    UnknownImport { module: String, name: String },
    /// The runtime refused or trapped.
    Runtime(InstantiationError),
    /// With VMs: what a VM cannot run.
    NotInVm(&'static str),
    /// With VMs: the VM could not be set up.
    Vm(String),
}

impl fmt::Display for InstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstError::UnknownImport { module, name } => {
                write!(f, "unknown import {module:?} {name:?}")
            }
            InstError::Runtime(InstantiationError::Link(e)) => write!(f, "link error: {e}"),
            InstError::Runtime(InstantiationError::Trap(t)) => {
                write!(f, "instantiation trapped: {}", first_line(t))
            }
            InstError::Runtime(e) => write!(f, "instantiation failed: {e}"),
            InstError::NotInVm(why) => f.write_str(why),
            InstError::Vm(e) => write!(f, "setting up the VM: {e}"),
        }
    }
}

impl std::error::Error for InstError {}

/// The state of one script.
struct Runner<'a> {
    file: &'a str,
    text: &'a str,
    engine: Engine,
    options: CompileOptions,
    store: Store,
    /// Import providers by module name: `spectest` and the `register`ed instances.
    registry: HashMap<String, Provider>,
    /// Instances by their `$id` in the script.
    named: HashMap<String, Instance>,
    /// `(module definition $id ...)` modules by id (`""` when unnamed).
    definitions: HashMap<String, Module>,
    /// The most recent module's instance, target of `invoke`s that name none.
    current: Option<Instance>,
    counts: Counts,
    /// With `--isolation vm`: the VMs instances run in.
    vms: Option<Vms>,
}

/// The VMs of a script run with [`Isolation::Vm`].
struct Vms {
    kvm: Kvm,
    config: WasmVmConfig,
    /// The VM of each store instance (alive while the script can still name it).
    by_instance: Vec<(Instance, WasmVm<()>)>,
}

impl<'a> Runner<'a> {
    fn new(file: &'a str, text: &'a str) -> Result<Runner<'a>> {
        let engine = Engine::new(EngineConfig::default()).context("creating the engine")?;
        let mut store = Store::new(&engine);
        let spectest = spectest::create(&mut store)?;
        let registry = HashMap::from([("spectest".to_string(), Provider::Host(spectest))]);
        Ok(Runner {
            file,
            text,
            engine,
            options: CompileOptions::default(),
            store,
            registry,
            named: HashMap::new(),
            definitions: HashMap::new(),
            current: None,
            counts: Counts::default(),
            vms: None,
        })
    }

    /// Runs one directive and counts it.
    fn run(&mut self, directive: WastDirective<'_>) {
        let span = directive.span();
        let keyword = keyword(&directive);
        // A panic is a bug in the runner or the runtime: count it against this directive and
        // carry on, so one bug does not hide the rest of the script.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.directive(directive)))
            .unwrap_or_else(|panic| Err(anyhow!("panicked: {}", panic_message(&*panic))));
        match outcome {
            Ok(()) => self.counts.passed += 1,
            Err(e) => {
                let (line, column) = span.linecol_in(self.text);
                self.counts.failures.push(Failure {
                    file: self.file.to_string(),
                    line: line + 1,
                    column: column + 1,
                    directive: keyword,
                    reason: format!("{e:#}"),
                });
            }
        }
    }

    fn directive(&mut self, directive: WastDirective<'_>) -> Result<()> {
        match directive {
            WastDirective::Module(mut module) => {
                let id = module.name().map(|id| id.name().to_string());
                // Until this module is instantiated, `invoke`s must not reach an older one.
                self.forget_current();
                if let Some(id) = &id {
                    self.named.remove(id);
                }
                let bytes = encode(&mut module)?;
                let module = self.build(&bytes)?;
                let instance = self.instantiate(&module)?;
                self.current = Some(instance);
                if let Some(id) = id {
                    self.named.insert(id, instance);
                }
                Ok(())
            }
            WastDirective::ModuleDefinition(mut module) => {
                let id = module.name().map(|id| id.name().to_string());
                let bytes = encode(&mut module)?;
                let module = self.build(&bytes)?;
                self.definitions.insert(id.unwrap_or_default(), module);
                Ok(())
            }
            WastDirective::ModuleInstance {
                instance: instance_id,
                module,
                ..
            } => {
                let key = module.map(|id| id.name().to_string()).unwrap_or_default();
                let module = self
                    .definitions
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| anyhow!("no module definition named {key:?}"))?;
                self.forget_current();
                let instance = self.instantiate(&module)?;
                self.current = Some(instance);
                if let Some(id) = instance_id {
                    self.named.insert(id.name().to_string(), instance);
                }
                Ok(())
            }
            WastDirective::Register { name, module, .. } => {
                if self.vms.is_some() {
                    bail!(
                        "register is not supported with --isolation vm: instances in VMs are \
                         linked to nothing but the hostcalls"
                    );
                }
                let instance = self.instance(module)?;
                self.registry
                    .insert(name.to_string(), Provider::Instance(instance));
                Ok(())
            }
            WastDirective::Invoke(invoke) => match self.invoke(&invoke)? {
                Ok(_) => Ok(()),
                Err(trap) => bail!("trapped: {}", first_line(&trap)),
            },
            WastDirective::AssertReturn { exec, results, .. } => {
                let got = match self.execute(exec)? {
                    Ok(got) => got,
                    Err(trap) => bail!(
                        "expected {}, trapped: {}",
                        values::show_patterns(&results),
                        first_line(&trap)
                    ),
                };
                let mismatch = || {
                    anyhow!(
                        "expected {}, got {}",
                        values::show_patterns(&results),
                        values::show_all(&got)
                    )
                };
                if got.len() != results.len() {
                    return Err(mismatch());
                }
                for (want, have) in results.iter().zip(&got) {
                    if !values::matches(want, have)? {
                        return Err(mismatch());
                    }
                }
                Ok(())
            }
            WastDirective::AssertTrap { exec, message, .. } => {
                let outcome = self.execute(exec)?;
                expect_trap(outcome, message)
            }
            WastDirective::AssertExhaustion { call, message, .. } => {
                let outcome = self.invoke(&call)?;
                expect_trap(outcome, message)
            }
            WastDirective::AssertInvalid {
                mut module,
                message,
                ..
            } => {
                // A module the text front end already rejects (e.g. a type mismatch it resolves)
                // never reaches the compiler; it is rejected all the same.
                let Ok(bytes) = module.encode() else {
                    return Ok(());
                };
                self.expect_rejected(&bytes, "invalid", message)
            }
            WastDirective::AssertMalformed {
                mut module,
                message,
                ..
            } => {
                // Quoted text that does not parse is malformed by definition.
                let Ok(bytes) = module.encode() else {
                    return Ok(());
                };
                self.expect_rejected(&bytes, "malformed", message)
            }
            WastDirective::AssertUnlinkable {
                mut module,
                message,
                ..
            } => {
                let bytes = encode_wat(&mut module)?;
                let module = self
                    .build(&bytes)
                    .context("expected an unlinkable module, but it does not compile")?;
                // Linking only: checked in the store even with VMs.
                let vms = self.vms.take();
                let linked = self.instantiate(&module);
                self.vms = vms;
                match linked {
                    Err(InstError::UnknownImport { .. })
                    | Err(InstError::Runtime(InstantiationError::Link(_))) => Ok(()),
                    Ok(_) => bail!("expected a link error ({message:?}), but it instantiated"),
                    Err(e) => bail!("expected a link error ({message:?}), got: {e}"),
                }
            }
            WastDirective::AssertInvalidCustom { .. }
            | WastDirective::AssertMalformedCustom { .. }
            | WastDirective::AssertException { .. }
            | WastDirective::AssertSuspension { .. }
            | WastDirective::Thread(_)
            | WastDirective::Wait { .. } => {
                bail!("directive not supported (not part of WebAssembly 2.0)")
            }
        }
    }

    /// Compiles `wasm` to an artifact and loads it.
    fn build(&self, wasm: &[u8]) -> Result<Module, BuildError> {
        let artifact = fnvm_compiler::compile(wasm, &self.options).map_err(BuildError::Compile)?;
        Module::from_artifact(&self.engine, &artifact).map_err(BuildError::Load)
    }

    /// Drops the current instance's VM unless the script named it, and forgets it.
    fn forget_current(&mut self) {
        if let (Some(current), Some(vms)) = (self.current.take(), self.vms.as_mut()) {
            if !self.named.values().any(|i| *i == current) {
                vms.by_instance.retain(|(i, _)| *i != current);
            }
        }
    }

    /// Instantiates `module` with its imports resolved through the registry (and, with VMs,
    /// in a VM of its own first: its start function runs there).
    fn instantiate(&mut self, module: &Module) -> Result<Instance, InstError> {
        let vm = match &self.vms {
            None => None,
            Some(_) if !module.info().imports.is_empty() => {
                return Err(InstError::NotInVm(
                    "a module with imports (spectest, a registered instance) cannot run in a \
                     VM: VMs link only the hostcalls",
                ))
            }
            Some(vms) => {
                let linked = LinkedModule::new(module, |_| None).map_err(InstError::Runtime)?;
                match WasmVm::with_host(&vms.kvm, &linked, (), &vms.config) {
                    Ok(vm) => Some(vm),
                    Err(WasmVmError::Start(Halt::Trap(t))) => {
                        return Err(InstError::Runtime(InstantiationError::Trap(t)))
                    }
                    Err(WasmVmError::Link(e)) => return Err(InstError::Runtime(e)),
                    Err(e) => return Err(InstError::Vm(e.to_string())),
                }
            }
        };
        let instance = self.instantiate_in_store(module)?;
        if let (Some(vm), Some(vms)) = (vm, self.vms.as_mut()) {
            vms.by_instance.push((instance, vm));
        }
        Ok(instance)
    }

    fn instantiate_in_store(&mut self, module: &Module) -> Result<Instance, InstError> {
        let mut imports = Vec::new();
        for import in &module.info().imports {
            let found = match self.registry.get(&import.module) {
                Some(Provider::Host(items)) => items.get(&import.name).copied(),
                Some(Provider::Instance(instance)) => {
                    self.store.get_export(*instance, &import.name)
                }
                None => None,
            };
            let Some(found) = found else {
                return Err(InstError::UnknownImport {
                    module: import.module.clone(),
                    name: import.name.clone(),
                });
            };
            imports.push(found);
        }
        self.store
            .instantiate(module, &imports)
            .map_err(InstError::Runtime)
    }

    /// The instance a directive names, or the current one.
    fn instance(&self, id: Option<Id<'_>>) -> Result<Instance> {
        match id {
            Some(id) => self
                .named
                .get(id.name())
                .copied()
                .ok_or_else(|| anyhow!("no instance named ${}", id.name())),
            None => self
                .current
                .ok_or_else(|| anyhow!("no current instance (the last module failed)")),
        }
    }

    fn invoke(&mut self, invoke: &WastInvoke<'_>) -> Result<Result<Vec<Val>, Trap>> {
        let instance = self.instance(invoke.module)?;
        let func = match self.store.get_export(instance, invoke.name) {
            Some(Extern::Func(func)) => func,
            Some(_) => bail!("export {:?} is not a function", invoke.name),
            None => bail!("no export named {:?}", invoke.name),
        };
        let args = invoke
            .args
            .iter()
            .map(values::arg)
            .collect::<Result<Vec<_>>>()?;
        if let Some(vms) = self.vms.as_mut() {
            let Some((_, vm)) = vms.by_instance.iter_mut().find(|(i, _)| *i == instance) else {
                bail!("the instance has no VM");
            };
            return match vm.call(invoke.name, &args) {
                Ok(Ok(values)) => Ok(Ok(values)),
                Ok(Err(Halt::Trap(trap))) => Ok(Err(trap)),
                Ok(Err(exit)) => bail!("the guest exited: {exit}"),
                Err(e) => bail!("in the VM: {e}"),
            };
        }
        Ok(self.store.call(func, &args))
    }

    /// Runs an `invoke`, `get` or module instantiation: its values, or the trap it ended with.
    fn execute(&mut self, exec: WastExecute<'_>) -> Result<Result<Vec<Val>, Trap>> {
        match exec {
            WastExecute::Invoke(invoke) => self.invoke(&invoke),
            WastExecute::Get { module, global, .. } => {
                if self.vms.is_some() {
                    bail!("get is not supported with --isolation vm (a VM's globals are not read from the host)");
                }
                let instance = self.instance(module)?;
                match self.store.get_export(instance, global) {
                    Some(Extern::Global(g)) => match self.store.global_get(g) {
                        Some(val) => Ok(Ok(vec![val])),
                        None => bail!("the runtime has no value for global {global:?}"),
                    },
                    Some(_) => bail!("export {global:?} is not a global"),
                    None => bail!("no export named {global:?}"),
                }
            }
            WastExecute::Wat(mut module) => {
                let bytes = encode_wat(&mut module)?;
                let module = self.build(&bytes)?;
                match self.instantiate(&module) {
                    Ok(_) => Ok(Ok(Vec::new())),
                    Err(InstError::Runtime(InstantiationError::Trap(trap))) => Ok(Err(trap)),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Checks that the compiler rejects `wasm` (`what` is "invalid" or "malformed").
    fn expect_rejected(&self, wasm: &[u8], what: &str, message: &str) -> Result<()> {
        match fnvm_compiler::compile(wasm, &self.options) {
            // A module that would only be valid with a proposal fnvm does not support is
            // invalid in WebAssembly 2.0; the compiler just names that proposal.
            Err(CompileError::Invalid { .. } | CompileError::Unsupported { .. }) => Ok(()),
            Ok(_) => bail!("expected a {what} module ({message:?}), but it compiled"),
            Err(e) => bail!("expected a {what} module ({message:?}), got: {e}"),
        }
    }
}

fn encode(module: &mut QuoteWat<'_>) -> Result<Vec<u8>> {
    module.encode().context("encoding the module")
}

fn encode_wat(module: &mut Wat<'_>) -> Result<Vec<u8>> {
    module.encode().context("encoding the module")
}

/// Checks that an execution trapped with (a message compatible with) `expected`.
fn expect_trap(outcome: Result<Vec<Val>, Trap>, expected: &str) -> Result<()> {
    match outcome {
        Ok(got) => bail!("expected trap {expected:?}, got {}", values::show_all(&got)),
        Err(trap) => {
            let message = first_line(&trap);
            if trap_message_matches(&message, expected) {
                Ok(())
            } else {
                bail!("expected trap {expected:?}, got trap {message:?}")
            }
        }
    }
}

/// A trap's message without the backtrace that follows it.
fn first_line(trap: &Trap) -> String {
    let message = trap.to_string();
    message.lines().next().unwrap_or_default().to_string()
}

/// Whether the runtime's trap message `actual` says what the script's `expected` says: one
/// contains the other, or they are known spellings of the same trap.
fn trap_message_matches(actual: &str, expected: &str) -> bool {
    const ALIASES: &[(&str, &str)] = &[
        ("call stack exhausted", "stack overflow"),
        (
            "indirect call type mismatch",
            "indirect call signature mismatch",
        ),
        ("out of bounds memory access", "memory access out of bounds"),
        ("out of bounds table access", "table access out of bounds"),
        ("invalid conversion to integer", "integer conversion"),
    ];
    if actual.is_empty() || expected.is_empty() {
        return actual == expected;
    }
    if actual.contains(expected) || expected.contains(actual) {
        return true;
    }
    ALIASES.iter().any(|(a, b)| {
        (actual.contains(a) && expected.contains(b)) || (actual.contains(b) && expected.contains(a))
    })
}

/// The keyword of a directive, for failure reports.
fn keyword(directive: &WastDirective<'_>) -> &'static str {
    match directive {
        WastDirective::Module(_) => "module",
        WastDirective::ModuleDefinition(_) => "module definition",
        WastDirective::ModuleInstance { .. } => "module instance",
        WastDirective::Register { .. } => "register",
        WastDirective::Invoke(_) => "invoke",
        WastDirective::AssertReturn { .. } => "assert_return",
        WastDirective::AssertTrap { .. } => "assert_trap",
        WastDirective::AssertExhaustion { .. } => "assert_exhaustion",
        WastDirective::AssertInvalid { .. } => "assert_invalid",
        WastDirective::AssertMalformed { .. } => "assert_malformed",
        WastDirective::AssertUnlinkable { .. } => "assert_unlinkable",
        WastDirective::AssertInvalidCustom { .. } => "assert_invalid_custom",
        WastDirective::AssertMalformedCustom { .. } => "assert_malformed_custom",
        WastDirective::AssertException { .. } => "assert_exception",
        WastDirective::AssertSuspension { .. } => "assert_suspension",
        WastDirective::Thread(_) => "thread",
        WastDirective::Wait { .. } => "wait",
    }
}

#[cfg(test)]
mod tests {
    use super::trap_message_matches;

    #[test]
    fn trap_messages() {
        assert!(trap_message_matches("unreachable", "unreachable"));
        assert!(trap_message_matches(
            "integer divide by zero",
            "integer divide by zero"
        ));
        assert!(trap_message_matches(
            "uninitialized element",
            "uninitialized element 2"
        ));
        assert!(trap_message_matches(
            "stack overflow",
            "call stack exhausted"
        ));
        assert!(!trap_message_matches(
            "uninitialized element",
            "undefined element"
        ));
        assert!(!trap_message_matches(
            "out of bounds table access",
            "undefined element"
        ));
        assert!(!trap_message_matches("", "unreachable"));
    }
}
