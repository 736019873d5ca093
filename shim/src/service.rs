//! Publishing by rollout stage: [`DualPublisher`] writes to a primary and a
//! shadow path; [`ServicePublisher`] reads its service's stage from a
//! [`StageHandle`] for every message (one atomic load) and routes it —
//! relay, dual either way, or broker — so a stage change takes effect at a
//! message boundary. Each path keeps one connection and one FIFO buffer
//! whatever its role, so a stage change never reorders or repeats a
//! message on either path. A stage needing a path the build left out is
//! never entered: the publisher keeps serving the stage it is at.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use myc_config::Stage;
use myc_rollout::{Plan, PlanFollower, Role, Route};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::path::{GuardedPath, ShadowLimits};
use crate::{BrokerSide, Error, Publisher, RelaySide, Unavailable};

/// `refused` when no stage is refused.
const NONE_REFUSED: u8 = u8::MAX;

/// The current stage of one service, shared between whoever changes it and
/// every publisher that reads it (and exported as a gauge).
#[derive(Debug, Clone)]
pub struct StageHandle {
    stage: Arc<AtomicU8>,
    gauge: Gauge,
    /// Reads of the followed plan that failed (missing after it was read,
    /// unparsable, unreadable); the stage stayed where it was each time.
    plan_errors: Counter,
}

impl StageHandle {
    /// A handle at `stage`.
    pub fn new(stage: Stage) -> StageHandle {
        let gauge = Gauge::default();
        gauge.set(i64::from(stage.index()));
        StageHandle { stage: Arc::new(AtomicU8::new(stage.index())), gauge, plan_errors: Counter::default() }
    }

    /// The stage now.
    #[inline]
    pub fn get(&self) -> Stage {
        Stage::from_index(self.stage.load(Ordering::Acquire)).unwrap_or_default()
    }

    /// Moves to `stage`; the next message published sees it.
    pub fn set(&self, stage: Stage) {
        self.stage.store(stage.index(), Ordering::Release);
        self.gauge.set(i64::from(stage.index()));
    }

    /// The stage as a gauge: 0 relay, 1 dual_relay_primary, 2
    /// dual_broker_primary, 3 broker.
    pub fn gauge(&self) -> &Gauge {
        &self.gauge
    }

    /// Problems met reading the followed plan (`myc_rollout_plan_errors_total`):
    /// each distinct problem once, however often the file is re-read.
    pub fn plan_errors(&self) -> &Counter {
        &self.plan_errors
    }

    /// Keeps the handle at `service`'s stage in the rollout plan at
    /// `plan_file`, re-read whenever the file changes (hot reload). A plan
    /// that stops parsing, or disappears after it was read, keeps the last
    /// stages: the reload logs one WARN naming the problem and
    /// [`StageHandle::plan_errors`] counts it. Only a plan that never
    /// existed means `default_stage`. Drop the returned watch to stop.
    ///
    /// # Errors
    /// The plan cannot be read now, or its directory cannot be watched.
    pub fn follow(
        plan_file: PathBuf,
        default_stage: Stage,
        service: &str,
    ) -> Result<(StageHandle, myc_config::Watched<Plan>), Error> {
        let plan_errors = Counter::default();
        let watched = watch_plan_counted(plan_file, default_stage, plan_errors.clone())?;
        let mut handle = StageHandle::new(watched.current().stage_of(service));
        handle.plan_errors = plan_errors;
        let mut changes = watched.subscribe();
        let (follower, service) = (handle.clone(), service.to_owned());
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let stage = changes.borrow_and_update().stage_of(&service);
                if stage != follower.get() {
                    tracing::info!(service = %service, stage = %stage, "rollout stage changed");
                    follower.set(stage);
                }
            }
        });
        Ok((handle, watched))
    }
}

/// The rollout plan at `plan_file`, re-read whenever the file changes, for
/// a follower: a plan that stops parsing, or disappears after it was read,
/// keeps the last good plan (one WARN per problem). Only a plan that never
/// existed is every service at `default_stage`.
///
/// # Errors
/// The plan cannot be read now, or its directory cannot be watched.
pub fn watch_plan(plan_file: PathBuf, default_stage: Stage) -> Result<myc_config::Watched<Plan>, Error> {
    watch_plan_counted(plan_file, default_stage, Counter::default())
}

/// [`watch_plan`], counting each distinct problem in `plan_errors`
/// (`myc_rollout_plan_errors_total`).
///
/// # Errors
/// As [`watch_plan`].
pub fn watch_plan_counted(
    plan_file: PathBuf,
    default_stage: Stage,
    plan_errors: Counter,
) -> Result<myc_config::Watched<Plan>, Error> {
    let follower = PlanFollower::new(plan_file.clone(), default_stage);
    // One problem, one count: a burst of writes can be read twice.
    let last_problem = std::sync::Mutex::new(None::<String>);
    myc_config::Watched::start(&plan_file, move || {
        let read = follower.read();
        let mut last = last_problem.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        read.inspect(|_| *last = None).map_err(|error| {
            let text = error.to_string();
            if last.as_deref() != Some(text.as_str()) {
                plan_errors.inc();
            }
            *last = Some(text.clone());
            myc_config::Error::Parse(text)
        })
    })
    .map_err(|error| Error::Settings(error.to_string()))
}

/// Primary awaited, shadow best effort.
#[derive(Debug)]
pub struct DualPublisher<P, S> {
    primary: GuardedPath<P>,
    shadow: GuardedPath<S>,
}

impl<P: Publisher, S: Publisher> DualPublisher<P, S> {
    /// Writes to `primary` and, without ever waiting on it, to `shadow`.
    pub fn new(primary: P, shadow: S, limits: ShadowLimits) -> DualPublisher<P, S> {
        DualPublisher { primary: GuardedPath::new(primary, limits), shadow: GuardedPath::new(shadow, limits) }
    }

    /// The primary path.
    pub fn primary(&self) -> &GuardedPath<P> {
        &self.primary
    }

    /// The shadow path.
    pub fn shadow(&self) -> &GuardedPath<S> {
        &self.shadow
    }
}

impl<P: Publisher, S: Publisher> Publisher for DualPublisher<P, S> {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        self.primary.primary(message).await?;
        self.shadow.shadow(message);
        Ok(())
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        self.primary.try_primary(message)?;
        self.shadow.shadow(message);
        Ok(())
    }

    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        let shadow = self.shadow.flush(deadline);
        let (primary, _) = tokio::join!(self.primary.flush(deadline), shadow);
        primary
    }

    fn is_connected(&self) -> bool {
        self.primary.publisher().is_connected()
    }

    fn buffered_bytes(&self) -> usize {
        self.primary.publisher().buffered_bytes()
    }
}

/// A service's publisher: the route follows its rollout stage, message by
/// message — except into a stage that needs a path this build left out.
#[derive(Debug)]
pub struct ServicePublisher<R, B> {
    relay: GuardedPath<R>,
    broker: GuardedPath<B>,
    stage: StageHandle,
    /// The stage routed by: the handle's, unless that needs a path the
    /// build lacks; then the last stage that did not.
    served: AtomicU8,
    /// The stage last refused (logged once), or `NONE_REFUSED`.
    refused: AtomicU8,
    /// Stage changes refused for a missing path
    /// (`myc_shim_stage_unavailable_total`).
    unavailable: Counter,
    /// The watches a publisher built from a settings file keeps alive.
    followers: Option<Followers>,
}

/// What keeps a publisher built by [`ServicePublisher::from_settings_file`]
/// current: the rollout plan it follows and its settings file.
#[derive(Debug)]
struct Followers {
    plan: myc_config::Watched<Plan>,
    settings: myc_config::Watched<myc_config::Settings>,
}

impl<R: Publisher, B: Publisher> ServicePublisher<R, B> {
    /// Routes by `stage` between `relay` and `broker`. Use
    /// [`ServicePublisher::try_new`] when a path may be unavailable.
    pub fn new(relay: R, broker: B, stage: StageHandle, limits: ShadowLimits) -> ServicePublisher<R, B> {
        let served = AtomicU8::new(stage.get().index());
        ServicePublisher {
            relay: GuardedPath::new(relay, limits),
            broker: GuardedPath::new(broker, limits),
            stage,
            served,
            refused: AtomicU8::new(NONE_REFUSED),
            unavailable: Counter::default(),
            followers: None,
        }
    }

    /// As [`ServicePublisher::new`], refusing a starting stage that needs a
    /// path this build lacks.
    ///
    /// # Errors
    /// [`Error::StageUnavailable`], naming the feature to enable.
    pub fn try_new(
        relay: R,
        broker: B,
        stage: StageHandle,
        limits: ShadowLimits,
    ) -> Result<ServicePublisher<R, B>, Error> {
        let publisher = ServicePublisher::new(relay, broker, stage, limits);
        let starting = publisher.stage.get();
        match publisher.missing_for(starting) {
            Some(missing) => {
                Err(Error::StageUnavailable { stage: starting, path: missing.path, feature: missing.feature })
            }
            None => Ok(publisher),
        }
    }

    /// The path `stage` needs that this build lacks, if any.
    fn missing_for(&self, stage: Stage) -> Option<Unavailable> {
        let route = Route::of(stage);
        let relay = route.relay.and_then(|_| self.relay.publisher().unavailable());
        relay.or_else(|| route.broker.and_then(|_| self.broker.publisher().unavailable()))
    }

    /// The route of the stage served now (one atomic load and a compare
    /// while the handle's stage is served).
    #[inline]
    fn route(&self) -> Route {
        let wanted = self.stage.get();
        let served = self.served.load(Ordering::Relaxed);
        if wanted.index() == served {
            return Route::of(wanted);
        }
        Route::of(self.switch(wanted, served))
    }

    /// Moves to `wanted` if the build can serve it; otherwise stays, and the
    /// first time `wanted` is refused logs it and counts it.
    #[cold]
    fn switch(&self, wanted: Stage, served: u8) -> Stage {
        let Some(missing) = self.missing_for(wanted) else {
            self.served.store(wanted.index(), Ordering::Relaxed);
            self.refused.store(NONE_REFUSED, Ordering::Relaxed);
            return wanted;
        };
        let served = Stage::from_index(served).unwrap_or_default();
        if self.refused.swap(wanted.index(), Ordering::Relaxed) != wanted.index() {
            self.unavailable.inc();
            // The gauge shows the stage actually served.
            self.stage.gauge().set(i64::from(served.index()));
            tracing::error!(
                stage = %wanted,
                staying_at = %served,
                feature = missing.feature,
                "the rollout plan asks for stage {wanted}, which needs the {} path this build lacks \
                 (enable the `{}` feature of myc-shim); staying at {served}",
                missing.path,
                missing.feature
            );
        }
        served
    }

    /// The stage served now (the handle's, unless this build cannot serve it).
    pub fn served_stage(&self) -> Stage {
        let _ = self.route();
        Stage::from_index(self.served.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// Stage changes refused so far because a path is missing.
    pub fn stage_unavailable(&self) -> &Counter {
        &self.unavailable
    }

    /// The relay path.
    pub fn relay(&self) -> &GuardedPath<R> {
        &self.relay
    }

    /// The broker path.
    pub fn broker(&self) -> &GuardedPath<B> {
        &self.broker
    }

    /// The stage handle.
    pub fn stage(&self) -> &StageHandle {
        &self.stage
    }

    /// Guards the broker path's primary role (stages `dual_broker_primary`
    /// and `broker`) with a breaker and spool; opens the spool now, and its
    /// pump sends what an earlier run left there before anything new.
    ///
    /// # Errors
    /// The spool cannot be opened (another producer holds its directory).
    pub fn guard_broker_primary(&mut self, options: crate::PrimaryOptions) -> Result<(), Error>
    where
        B: Clone + 'static,
    {
        self.broker.guard_primary(options)
    }

    /// Copies both paths' own counts into their exported counters.
    pub fn refresh(&self) {
        self.relay.refresh();
        self.broker.refresh();
    }

    /// The current summary of both paths.
    pub fn summary(&self) -> crate::Summary {
        crate::Summary::of(self.served_stage(), &self.relay, &self.broker)
    }

    /// Applies each good edit of the settings file this publisher was built
    /// from ([`ServicePublisher::from_settings_file`]) while it runs, as
    /// `myc produce` does (see [`crate::live`]); `None` for a publisher
    /// built otherwise. Stops when the returned guard drops.
    pub fn follow_settings(self: &Arc<Self>) -> Option<myc_transport::AbortOnDrop>
    where
        R: crate::live::Reconfigure + 'static,
        B: crate::live::Reconfigure + 'static,
    {
        let (_, settings) = self.watches()?;
        Some(crate::live::follow(Arc::clone(self), settings))
    }

    /// The watches of the rollout plan and settings file, for a publisher
    /// built from a settings file.
    pub fn watches(&self) -> Option<(&myc_config::Watched<Plan>, &myc_config::Watched<myc_config::Settings>)> {
        self.followers.as_ref().map(|followers| (&followers.plan, &followers.settings))
    }
}

impl ServicePublisher<RelaySide, BrokerSide> {
    /// The publisher of `service` the settings describe, at `stage`: the
    /// relay path and the broker backend `broker.backend` names, with the
    /// shadow limits of `[shadow]`.
    ///
    /// # Errors
    /// Settings a path cannot use, or a starting stage this build cannot
    /// serve ([`Error::StageUnavailable`], naming the feature to enable).
    pub async fn from_settings(
        settings: &myc_config::Settings,
        service: &str,
        stage: StageHandle,
    ) -> Result<ServicePublisher<RelaySide, BrokerSide>, Error> {
        let relay = RelaySide::from_settings(settings);
        // Refuse a relay stage before connecting to a broker.
        if let Some(gap) = relay.unavailable().filter(|_| Route::of(stage.get()).relay.is_some()) {
            return Err(Error::StageUnavailable { stage: stage.get(), path: gap.path, feature: gap.feature });
        }
        let broker = BrokerSide::from_settings(settings, service).await?;
        ServicePublisher::try_new(relay, broker, stage, ShadowLimits::from_settings(&settings.shadow))
    }

    /// The one constructor a ported service needs: the settings in
    /// `settings_file` (then `MYC_*` from the environment), the stage of
    /// `service` in the rollout plan they name — followed live — and the
    /// settings file re-read on change (a bad edit is logged and counted,
    /// the last good settings kept). The broker path's breaker and spool
    /// are those of `[broker]`. To apply good edits while running, share it
    /// and call [`ServicePublisher::follow_settings`].
    ///
    /// # Errors
    /// Settings refused, a plan that cannot be read, settings a path cannot
    /// use, or a starting stage this build cannot serve.
    pub async fn from_settings_file(
        settings_file: impl Into<PathBuf>,
        service: &str,
    ) -> Result<ServicePublisher<RelaySide, BrokerSide>, Error> {
        let file = settings_file.into();
        let sources = myc_config::Sources::discover(Some(file.clone()));
        let settings = myc_config::load(&sources).map_err(|error| Error::Settings(error.to_string()))?;
        let rollout = &settings.rollout;
        let (stage, plan) = StageHandle::follow(rollout.file.clone(), rollout.default_stage, service)?;
        let mut publisher = ServicePublisher::from_settings(&settings, service, stage).await?;
        if publisher.broker.publisher().unavailable().is_none() {
            publisher.guard_broker_primary(crate::PrimaryOptions::from_settings(&settings.broker))?;
        }
        let watched_settings = myc_config::Watched::start(&file, move || myc_config::load(&sources))
            .map_err(|error| Error::Settings(error.to_string()))?;
        publisher.followers = Some(Followers { plan, settings: watched_settings });
        Ok(publisher)
    }
}

impl<R: Publisher, B: Publisher> Publisher for ServicePublisher<R, B> {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        match self.route() {
            Route { relay: Some(Role::Primary), broker } => {
                self.relay.primary(message).await?;
                if broker.is_some() {
                    self.broker.shadow(message);
                }
            }
            Route { broker: Some(Role::Primary), relay } => {
                self.broker.primary(message).await?;
                if relay.is_some() {
                    self.relay.shadow(message);
                }
            }
            Route { .. } => return Err(Error::NoPath),
        }
        Ok(())
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        match self.route() {
            Route { relay: Some(Role::Primary), broker } => {
                self.relay.try_primary(message)?;
                if broker.is_some() {
                    self.broker.shadow(message);
                }
            }
            Route { broker: Some(Role::Primary), relay } => {
                self.broker.try_primary(message)?;
                if relay.is_some() {
                    self.relay.shadow(message);
                }
            }
            Route { .. } => return Err(Error::NoPath),
        }
        Ok(())
    }

    /// With a spool on the primary broker path, one spool write for the
    /// whole batch; otherwise message by message.
    async fn publish_batch(&self, messages: &[u8]) -> Result<(), Error> {
        let route = Route::of(self.stage.get());
        if route.broker == Some(Role::Primary) && self.broker.has_spool() {
            let list = crate::split(messages)?;
            match self.broker.primary_batch(&list) {
                Some(result) => result?,
                // The spool was turned off meanwhile.
                None => {
                    for message in list {
                        self.publish(message).await?;
                    }
                    return Ok(());
                }
            }
            if route.relay.is_some() {
                for message in list {
                    self.relay.shadow(message);
                }
            }
            return Ok(());
        }
        for message in crate::split(messages)? {
            self.publish(message).await?;
        }
        Ok(())
    }

    /// Flushes both paths (a path that carried nothing is flushed at once);
    /// the result is the current primary's.
    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        let (relay, broker) = tokio::join!(self.relay.flush(deadline), self.broker.flush(deadline));
        match self.route().relay {
            Some(Role::Primary) => relay,
            _ => broker,
        }
    }

    fn is_connected(&self) -> bool {
        match self.route().relay {
            Some(Role::Primary) => self.relay.publisher().is_connected(),
            _ => self.broker.publisher().is_connected(),
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.relay.publisher().buffered_bytes() + self.broker.publisher().buffered_bytes()
    }
}
