//! The numbered enumerations of Protocol V2: relay domains, sources and TLV
//! types (docs/protocol-v2.md §4).
//!
//! Every enum keeps values it does not name as `Unknown(n)`: a decoder never
//! rejects a message for an unlisted source or TLV type, and renders its name
//! as `unknown`. Equality and hashing go by the wire number, so
//! `Source::Unknown(2) == Source::KrakenCollector`; construct values with
//! `from_u8` to get the named variant. Deciding which domains may be routed is
//! left to the relay and the shim.

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $display:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version does not name; kept, never rejected.
            Unknown(u8),
        }

        impl $name {
            /// The variant for a wire value (`Unknown` when it is not named).
            pub const fn from_u8(value: u8) -> Self {
                match value {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }

            /// The wire value.
            pub const fn as_u8(self) -> u8 {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Unknown(value) => value,
                }
            }

            /// The display name used in renderings; `unknown` for unnamed values.
            pub const fn name(self) -> &'static str {
                match Self::from_u8(self.as_u8()) {
                    $( Self::$variant => $display, )*
                    Self::Unknown(_) => "unknown",
                }
            }

            /// Whether this value has a name in this version of the spec.
            pub const fn is_known(self) -> bool {
                !matches!(Self::from_u8(self.as_u8()), Self::Unknown(_))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.as_u8() == other.as_u8()
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_u8().hash(state);
            }
        }

        impl From<u8> for $name {
            fn from(value: u8) -> Self {
                Self::from_u8(value)
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                value.as_u8()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_enum! {
    /// The `relay_domain` header byte (docs/protocol-v2.md §4.1). Only the four named domains
    /// can be routed; decoders still render other values as `unknown`.
    pub enum Domain {
        /// Market data (`market_data`).
        MarketData = 1 => "market_data",
        /// Signals (`signal`).
        Signal = 2 => "signal",
        /// Execution (`execution`).
        Execution = 3 => "execution",
        /// System (`system`).
        System = 4 => "system",
    }
}

impl Domain {
    /// The four routable domains, in wire order.
    pub const ALL: [Domain; 4] = [Domain::MarketData, Domain::Signal, Domain::Execution, Domain::System];

    /// The domain with this rendering name (`market_data`, `signal`, …).
    pub fn from_name(name: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|domain| domain.name() == name)
    }
}

wire_enum! {
    /// The `source` header byte: which kind of producer built the message
    /// (docs/protocol-v2.md §4.2). Unlisted values, `0` included, are kept.
    pub enum Source {
        /// 1
        BinanceCollector = 1 => "BinanceCollector",
        /// 2
        KrakenCollector = 2 => "KrakenCollector",
        /// 3
        CoinbaseCollector = 3 => "CoinbaseCollector",
        /// 4
        PolygonCollector = 4 => "PolygonCollector",
        /// 5
        GeminiCollector = 5 => "GeminiCollector",
        /// 20
        ArbitrageStrategy = 20 => "ArbitrageStrategy",
        /// 21
        MarketMaker = 21 => "MarketMaker",
        /// 22
        TrendFollower = 22 => "TrendFollower",
        /// 23
        KrakenSignalStrategy = 23 => "KrakenSignalStrategy",
        /// 40
        PortfolioManager = 40 => "PortfolioManager",
        /// 41
        RiskManager = 41 => "RiskManager",
        /// 42
        ExecutionEngine = 42 => "ExecutionEngine",
        /// 60
        Dashboard = 60 => "Dashboard",
        /// 61
        MetricsCollector = 61 => "MetricsCollector",
        /// 62
        StateManager = 62 => "StateManager",
        /// 80
        MarketDataRelay = 80 => "MarketDataRelay",
        /// 81
        SignalRelay = 81 => "SignalRelay",
        /// 82
        ExecutionRelay = 82 => "ExecutionRelay",
        /// 99
        TestClient = 99 => "TestClient",
    }
}

wire_enum! {
    /// A TLV type number (docs/protocol-v2.md §4.3). Only Trade, Quote and Heartbeat have a
    /// defined payload layout; every other number is carried as opaque bytes.
    /// `255` is the extended-form marker and never a real type.
    pub enum TlvType {
        /// 1, 40-byte payload, see [`crate::Trade`].
        Trade = 1 => "Trade",
        /// 2, 56-byte payload, see [`crate::Quote`].
        Quote = 2 => "Quote",
        /// 3
        OrderBook = 3 => "OrderBook",
        /// 4
        InstrumentMeta = 4 => "InstrumentMeta",
        /// 5
        L2Snapshot = 5 => "L2Snapshot",
        /// 6
        L2Delta = 6 => "L2Delta",
        /// 7
        L2Reset = 7 => "L2Reset",
        /// 8
        PriceUpdate = 8 => "PriceUpdate",
        /// 9
        VolumeUpdate = 9 => "VolumeUpdate",
        /// 10
        PoolLiquidity = 10 => "PoolLiquidity",
        /// 11
        PoolSwap = 11 => "PoolSwap",
        /// 12
        PoolMint = 12 => "PoolMint",
        /// 13
        PoolBurn = 13 => "PoolBurn",
        /// 14
        PoolTick = 14 => "PoolTick",
        /// 15
        PoolState = 15 => "PoolState",
        /// 16
        PoolSync = 16 => "PoolSync",
        /// 17
        QuoteUpdate = 17 => "QuoteUpdate",
        /// 18
        GasPrice = 18 => "GasPrice",
        /// 19
        StateInvalidationReason = 19 => "StateInvalidationReason",
        /// 20
        SignalIdentity = 20 => "SignalIdentity",
        /// 21
        AssetCorrelation = 21 => "AssetCorrelation",
        /// 22
        Economics = 22 => "Economics",
        /// 23
        ExecutionAddresses = 23 => "ExecutionAddresses",
        /// 24
        VenueMetadata = 24 => "VenueMetadata",
        /// 25
        StateReference = 25 => "StateReference",
        /// 26
        ExecutionControl = 26 => "ExecutionControl",
        /// 27
        PoolAddresses = 27 => "PoolAddresses",
        /// 28
        MevBundle = 28 => "MEVBundle",
        /// 29
        TertiaryVenue = 29 => "TertiaryVenue",
        /// 30
        RiskParameters = 30 => "RiskParameters",
        /// 31
        PerformanceMetrics = 31 => "PerformanceMetrics",
        /// 32
        ArbitrageSignal = 32 => "ArbitrageSignal",
        /// 40
        OrderRequest = 40 => "OrderRequest",
        /// 41
        OrderStatus = 41 => "OrderStatus",
        /// 42
        Fill = 42 => "Fill",
        /// 43
        OrderCancel = 43 => "OrderCancel",
        /// 44
        OrderModify = 44 => "OrderModify",
        /// 45
        ExecutionReport = 45 => "ExecutionReport",
        /// 46
        Portfolio = 46 => "Portfolio",
        /// 47
        Position = 47 => "Position",
        /// 48
        Balance = 48 => "Balance",
        /// 49
        TradeConfirmation = 49 => "TradeConfirmation",
        /// 60
        RiskDecision = 60 => "RiskDecision",
        /// 61
        PositionUpdate = 61 => "PositionUpdate",
        /// 62
        RiskAlert = 62 => "RiskAlert",
        /// 63
        CollateralUpdate = 63 => "CollateralUpdate",
        /// 64
        ExposureReport = 64 => "ExposureReport",
        /// 65
        PortfolioEvent = 65 => "PortfolioEvent",
        /// 66
        RiskThreshold = 66 => "RiskThreshold",
        /// 67
        FlashLoanResult = 67 => "FlashLoanResult",
        /// 68
        PostTradeAnalytics = 68 => "PostTradeAnalytics",
        /// 69
        PositionQuery = 69 => "PositionQuery",
        /// 70
        RiskMetrics = 70 => "RiskMetrics",
        /// 71
        CircuitBreaker = 71 => "CircuitBreaker",
        /// 72
        StrategyRegistration = 72 => "StrategyRegistration",
        /// 80
        ComplianceCheck = 80 => "ComplianceCheck",
        /// 81
        AuditTrail = 81 => "AuditTrail",
        /// 82
        RegulatoryReport = 82 => "RegulatoryReport",
        /// 83
        TradeBreakdown = 83 => "TradeBreakdown",
        /// 84
        SettlementInstruction = 84 => "SettlementInstruction",
        /// 85
        ClearingReport = 85 => "ClearingReport",
        /// 86
        MarginCall = 86 => "MarginCall",
        /// 87
        CustodyEvent = 87 => "CustodyEvent",
        /// 88
        VenueConnectivity = 88 => "VenueConnectivity",
        /// 89
        CrossVenueSpread = 89 => "CrossVenueSpread",
        /// 90
        ArbitrageExecution = 90 => "ArbitrageExecution",
        /// 100, 16-byte payload, see [`crate::Heartbeat`].
        Heartbeat = 100 => "Heartbeat",
        /// 101
        Snapshot = 101 => "Snapshot",
        /// 102
        Error = 102 => "Error",
        /// 103
        ConfigUpdate = 103 => "ConfigUpdate",
        /// 104
        ServiceDiscovery = 104 => "ServiceDiscovery",
        /// 105
        ResourceUsage = 105 => "ResourceUsage",
        /// 106
        StateInvalidation = 106 => "StateInvalidation",
        /// 107
        SystemHealth = 107 => "SystemHealth",
        /// 108
        TraceContext = 108 => "TraceContext",
        /// 110
        RecoveryRequest = 110 => "RecoveryRequest",
        /// 111
        RecoveryResponse = 111 => "RecoveryResponse",
        /// 112
        SequenceSync = 112 => "SequenceSync",
        /// 200
        PoolInfo = 200 => "PoolInfo",
        /// 201
        PoolCacheHeader = 201 => "PoolCacheHeader",
        /// 202
        ProprietaryData = 202 => "ProprietaryData",
        /// 203
        CustomMetrics = 203 => "CustomMetrics",
        /// 204
        ExperimentalSignal = 204 => "ExperimentalSignal",
    }
}

/// TLV type numbers that were once used and retired. A retired number is never
/// reused for a new meaning (docs/protocol-v2.md §2); none has been retired yet. A new type
/// must not take a number listed here.
pub const RETIRED_TLV_TYPES: &[u8] = &[];

/// Which relay domain a TLV type belongs to (docs/protocol-v2.md §4.1, "natural domain").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NaturalDomain {
    /// The type belongs to exactly this domain.
    Only(Domain),
    /// A vendor type (200–254), allowed in any domain.
    Any,
    /// A number in no assigned range (0, 120–199, 255).
    Unassigned,
}

impl TlvType {
    /// The domain this type belongs to, used to report messages whose TLVs do
    /// not match their header's domain.
    pub const fn natural_domain(self) -> NaturalDomain {
        match self.as_u8() {
            1..=19 => NaturalDomain::Only(Domain::MarketData),
            20..=39 => NaturalDomain::Only(Domain::Signal),
            40..=79 => NaturalDomain::Only(Domain::Execution),
            80..=119 => NaturalDomain::Only(Domain::System),
            200..=254 => NaturalDomain::Any,
            _ => NaturalDomain::Unassigned,
        }
    }

    /// Whether a TLV of this type may appear in a message of `domain`.
    pub fn belongs_to(self, domain: Domain) -> bool {
        match self.natural_domain() {
            NaturalDomain::Only(natural) => natural == domain,
            NaturalDomain::Any => true,
            NaturalDomain::Unassigned => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_value_round_trips_through_the_enums() {
        for value in 0..=u8::MAX {
            assert_eq!(Domain::from_u8(value).as_u8(), value);
            assert_eq!(Source::from_u8(value).as_u8(), value);
            assert_eq!(TlvType::from_u8(value).as_u8(), value);
        }
    }

    #[test]
    fn unknown_values_compare_equal_to_the_named_variant_of_the_same_number() {
        assert_eq!(Source::Unknown(2), Source::KrakenCollector);
        assert_eq!(Source::Unknown(2).name(), "KrakenCollector");
        assert_eq!(Source::from_u8(0).name(), "unknown");
        assert_eq!(Domain::from_u8(9).name(), "unknown");
        assert_eq!(TlvType::from_u8(150).name(), "unknown");
        assert!(!TlvType::from_u8(150).is_known());
    }

    #[test]
    fn names_match_the_spec_tables() {
        let check = |value: u8, expect: &str| assert_eq!(TlvType::from_u8(value).name(), expect);
        check(1, "Trade");
        check(28, "MEVBundle");
        check(100, "Heartbeat");
        check(112, "SequenceSync");
        check(204, "ExperimentalSignal");
        check(33, "unknown");
        assert_eq!(Domain::from_name("signal"), Some(Domain::Signal));
        assert_eq!(Domain::from_name("signals"), None);
        assert_eq!(Source::from_u8(99).name(), "TestClient");
    }

    #[test]
    fn natural_domains_follow_the_ranges() {
        assert!(TlvType::Trade.belongs_to(Domain::MarketData));
        assert!(!TlvType::Trade.belongs_to(Domain::Signal));
        assert!(TlvType::RiskDecision.belongs_to(Domain::Execution));
        assert!(TlvType::Heartbeat.belongs_to(Domain::System));
        assert!(TlvType::PoolInfo.belongs_to(Domain::Signal));
        assert_eq!(TlvType::from_u8(150).natural_domain(), NaturalDomain::Unassigned);
    }

    #[test]
    fn no_named_type_reuses_a_retired_number() {
        for &retired in RETIRED_TLV_TYPES {
            assert!(!TlvType::from_u8(retired).is_known(), "type {retired} is retired");
        }
    }
}
