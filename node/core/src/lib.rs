//! The mesh's rules as plain state machines, apart from every kind of I/O: [`Core`] takes
//! events (a heartbeat heard, a request, an answer, a render finished, a tick carrying the
//! current time) and returns [`Action`]s (publish, send, reply, fetch, stitch, render). No
//! tokio, no clock, no randomness, no sockets: the actor in `rendermesh_node::mesh` feeds it the real
//! network and clock, and the simulator in `node/core/tests/sim.rs` a simulated network in virtual
//! time.
//!
//! - [`membership`]: who is live, the coordinator election and the terms;
//! - [`table`]: the replicated job table and the pulls that keep it current;
//! - [`coordinator`]: the coordinator's rules, in a type that exists only while this node
//!   coordinates;
//! - [`worker`]: the task this node renders and the reports it owes;
//! - [`node`]: one node's core, which routes every event to the part it concerns;
//! - [`swarm`]: one blob fetched in pieces from several sources (which piece to ask of whom),
//!   driven by the node's fetch, apart from [`Core`].

pub mod coordinator;
pub mod membership;
pub mod node;
pub mod swarm;
pub mod table;
pub mod worker;

use rendermesh_protocol::{
    Assignment, BlobHash, Heartbeat, Job, JobId, JobSpec, NodeId, OutputFormat, Request, Response,
    Term, Tile,
};

pub use coordinator::Policy;
pub use node::{Core, Profile};

/// Milliseconds on a monotonic clock. Only differences matter: the actor counts from when it
/// started, the simulator from zero.
pub type Millis = u64;

/// Names something the core asked of the outside (a request, a fetch, a stitch), so that its
/// answer finds the part that asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Where the answer to a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyTo {
    /// To the outside: the caller keeps the channel under this number.
    Outside(u64),
    /// To this node's own request `Ticket` (a node assigning or reporting to itself).
    Inside(Ticket),
}

/// Why a frame was not stitched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StitchFailure {
    /// A tile could not be fetched or the frame not copied: try again later.
    Retry(String),
    /// The tiles do not make a frame: no retry will help.
    Fatal(String),
}

/// What a node keeps on disk so that a restart carries on where it stopped: the highest term
/// it has seen and its copy of every job record. [`Core::restore`] takes it back at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// The highest term this node has seen.
    pub term: Term,
    /// Its job records.
    pub jobs: Vec<Job>,
    /// Blobs it found damaged and has not fetched again yet.
    pub repairs: Vec<BlobHash>,
}

/// What changed in what a node keeps on disk since the last [`Action::Persist`]: written in
/// one transaction, before any later action is carried out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    /// The highest term seen, when it went up.
    pub term: Option<Term>,
    /// Records written or replaced, whole.
    pub jobs: Vec<Job>,
    /// The blobs still to fetch again, all of them, when the set changed.
    pub repairs: Option<Vec<BlobHash>>,
    /// Records to delete (tombstones forgotten).
    pub forget: Vec<JobId>,
}

impl Persist {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.term.is_none()
            && self.jobs.is_empty()
            && self.repairs.is_none()
            && self.forget.is_empty()
    }
}

/// What the core asks the outside to do. Each action that carries a [`Ticket`] expects its
/// result back through the matching [`Core`] method.
#[derive(Clone, Debug)]
pub enum Action {
    /// Write this to disk, durably, before carrying out any action after it. The core puts it
    /// first among the actions of the event that made it, so a node never acts on a record
    /// (answers, assigns, advertises) that a power cut could take back.
    Persist(Box<Persist>),
    /// Publish this heartbeat on the gossip topic.
    Publish(Heartbeat),
    /// A new peer: connect to it at these addresses.
    Dial {
        /// The peer.
        peer: NodeId,
        /// Its multiaddrs, as its heartbeat gave them.
        addrs: Vec<String>,
    },
    /// Send `request` to `to`; the answer goes to [`Core::answered`].
    Send {
        /// The peer (never this node: the core answers its own requests itself).
        to: NodeId,
        /// What to send.
        request: Request,
        /// Names the answer.
        ticket: Ticket,
    },
    /// Answer a request the outside handed in with [`ReplyTo::Outside`].
    Reply {
        /// The number the request came with.
        to: u64,
        /// The answer.
        response: Response,
    },
    /// Hold every blob of `blobs` in the local store, fetching the missing ones (from `hints`
    /// first); the result goes to [`Core::fetched`].
    Fetch {
        /// The blobs.
        blobs: Vec<BlobHash>,
        /// Nodes likely to hold them.
        hints: Vec<NodeId>,
        /// Names the result.
        ticket: Ticket,
    },
    /// Fetch the tiles of a frame, stitch them, store the frame and copy it to `copy_to`; the
    /// frame goes to [`Core::stitched`].
    Stitch {
        /// The job.
        job: JobId,
        /// The frame.
        frame: u32,
        /// Its format.
        format: OutputFormat,
        /// Each tile and the blob holding it.
        tiles: Vec<(Tile, BlobHash)>,
        /// Nodes likely to hold the tiles.
        hints: Vec<NodeId>,
        /// A second node to hold the frame (`None` in a mesh of one).
        copy_to: Option<NodeId>,
        /// Names the result.
        ticket: Ticket,
    },
    /// Fetch two renders of one frame (or tile) and say whether they hold the same pixels; the
    /// answer goes to [`Core::compared`]: `Ok(false)` too when either is not an image, `Err`
    /// when they could not be fetched (the comparison is made again later).
    Compare {
        /// The render checked.
        checked: BlobHash,
        /// The check's render of it.
        check: BlobHash,
        /// Nodes likely to hold them.
        hints: Vec<NodeId>,
        /// Names the answer.
        ticket: Ticket,
    },
    /// Render this assignment (from the coordinator `from`); progress goes to
    /// [`Core::progress`], the end to [`Core::rendered`].
    Render {
        /// What to render (boxed: the spec inside makes it the largest action by far).
        assignment: Box<Assignment>,
        /// The coordinator that assigned it (it holds the job's files too).
        from: NodeId,
    },
    /// Stop the render under way: its job ended.
    CancelRender,
    /// Get ready to render job `job` before its first task comes: fetch and lay out its
    /// `.blend` and files, and start a Blender session with the file loaded. Nothing comes
    /// back: the first task finds it done (or does it itself).
    Prepare {
        /// The job.
        job: JobId,
        /// What it renders (boxed: it is large).
        spec: Box<JobSpec>,
        /// The node it was submitted on, which holds its files.
        origin: NodeId,
    },
    /// Delete these blobs from the store: removed jobs used them, and no kept job does.
    Collect(Vec<BlobHash>),
    /// Ask this node's Blender which engines it renders with headless; the answer goes to
    /// [`Core::set_engines`]. Asked once, when the node has been idle a while
    /// ([`worker::PROBE_IDLE_MS`]), so that the probe never competes with a render.
    ProbeEngines,
}

/// Where the parts of the core put their actions, and where tickets come from. A request to
/// this node itself never leaves: it is handled, and answered, inside.
#[derive(Debug)]
pub struct Outbox {
    me: NodeId,
    actions: Vec<Action>,
    next: u64,
    /// Requests this node sends itself.
    to_self: Vec<(Ticket, Request)>,
    /// Answers this node gives itself.
    inside: Vec<(Ticket, Response)>,
}

impl Outbox {
    /// An empty outbox of node `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            actions: Vec::new(),
            next: 0,
            to_self: Vec::new(),
            inside: Vec::new(),
        }
    }

    /// The actions queued so far, taken out.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// A fresh ticket.
    pub fn ticket(&mut self) -> Ticket {
        self.next += 1;
        Ticket(self.next)
    }

    /// Queues `action`.
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Queues a write to disk after the writes queued so far (so the newest lands last) and
    /// before every other action queued so far.
    pub fn persist(&mut self, persist: Persist) {
        let at = self
            .actions
            .iter()
            .position(|a| !matches!(a, Action::Persist(_)))
            .unwrap_or(self.actions.len());
        self.actions.insert(at, Action::Persist(Box::new(persist)));
    }

    /// Queues a request to `to`; returns the ticket its answer will carry.
    pub fn send(&mut self, to: NodeId, request: Request) -> Ticket {
        let ticket = self.ticket();
        if to == self.me {
            self.to_self.push((ticket, request));
            return ticket;
        }
        self.actions.push(Action::Send {
            to,
            request,
            ticket,
        });
        ticket
    }

    /// Queues a fetch; returns the ticket its result will carry.
    pub fn fetch(&mut self, blobs: Vec<BlobHash>, hints: Vec<NodeId>) -> Ticket {
        let ticket = self.ticket();
        self.actions.push(Action::Fetch {
            blobs,
            hints,
            ticket,
        });
        ticket
    }

    /// Answers a request.
    pub fn reply(&mut self, to: ReplyTo, response: Response) {
        match to {
            ReplyTo::Outside(to) => self.actions.push(Action::Reply { to, response }),
            ReplyTo::Inside(ticket) => self.inside.push((ticket, response)),
        }
    }

    /// Answers a request when there is somebody to answer.
    pub fn reply_to(&mut self, to: Option<ReplyTo>, response: Response) {
        if let Some(to) = to {
            self.reply(to, response);
        }
    }
}
