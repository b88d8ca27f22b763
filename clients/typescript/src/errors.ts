/** Typed errors: the server's error table inverted, decoded from gRPC status details. */
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";

import { TaskStatus, type TaskPayload } from "./gen/agentstream/v1/message_pb.js";

export const ERROR_DOMAIN = "agentstream.dev";

/** A request field at fault (google.rpc.BadRequest). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** A call the server (or the transport) failed. `reason` is the error table's reason; empty for transport errors. */
export class AgentStreamError extends Error {
  constructor(
    message: string,
    readonly code: Code,
    readonly reason: string,
    readonly metadata: Record<string, string>,
    readonly fieldViolations: FieldViolation[],
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The gRPC code name, e.g. "NOT_FOUND". */
  get codeName(): string {
    return Code[this.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  }
}

export class InvalidArgumentError extends AgentStreamError {}
/** No usable token: none, malformed, unknown, expired or badly signed (the message says which). */
export class UnauthenticatedError extends AgentStreamError {}
/** The token is valid but none of its roles may make this call (metadata: method, required_role). */
export class PermissionDeniedError extends AgentStreamError {
  /** The smallest role that may make this call. */
  get requiredRole(): string {
    return this.metadata["required_role"] ?? "";
  }
}
export class AgentNotFoundError extends AgentStreamError {
  /** The agents the server does know. */
  get knownAgents(): string[] {
    return (this.metadata["known_agents"] ?? "").split(",").filter(Boolean);
  }
}
export class RunAlreadyExistsError extends AgentStreamError {}
export class TooManyRunsError extends AgentStreamError {}
export class ServerDrainingError extends AgentStreamError {}
export class RunNotFoundError extends AgentStreamError {}
export class SeqOutOfRangeError extends AgentStreamError {}
export class TooManySubscribersError extends AgentStreamError {}
export class LLMUpstreamError extends AgentStreamError {}
export class RunStoreUnavailableError extends AgentStreamError {}
export class MaxStepsExceededError extends AgentStreamError {}
export class RunTimedOutError extends AgentStreamError {}
export class RunCancelledError extends AgentStreamError {}
/** The replica executing the run died; its terminal status is INTERRUPTED. */
export class RunInterruptedError extends AgentStreamError {}
/** A run is already live on the session; metadata run_id names it. Wait for it to end or cancel it. */
export class SessionBusyError extends AgentStreamError {}
/** No session with the requested id is known (never used, deleted, or idle past its TTL). */
export class SessionNotFoundError extends AgentStreamError {}
/** No such run, or the run has no interrupt with that id. */
export class InterruptNotFoundError extends AgentStreamError {}
/** The interrupt was already resolved (by another caller, or by its approval timeout). */
export class InterruptAlreadyResolvedError extends AgentStreamError {}
/** Agents called as tools nested deeper than the server allows; the run ends FAILED. */
export class AgentDepthExceededError extends AgentStreamError {}
export class InternalError extends AgentStreamError {}
/** A failure without agentstream details: unreachable server, aborted call, client deadline. */
export class TransportError extends AgentStreamError {}

type ErrorClass = new (...args: ConstructorParameters<typeof AgentStreamError>) => AgentStreamError;

/** Error class for each ErrorInfo reason of the server's error table. */
export const ERRORS_BY_REASON: Record<string, ErrorClass> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  UNAUTHENTICATED: UnauthenticatedError,
  PERMISSION_DENIED: PermissionDeniedError,
  AGENT_NOT_FOUND: AgentNotFoundError,
  RUN_ALREADY_EXISTS: RunAlreadyExistsError,
  TOO_MANY_RUNS: TooManyRunsError,
  SERVER_DRAINING: ServerDrainingError,
  RUN_NOT_FOUND: RunNotFoundError,
  SEQ_OUT_OF_RANGE: SeqOutOfRangeError,
  TOO_MANY_SUBSCRIBERS: TooManySubscribersError,
  LLM_UPSTREAM_ERROR: LLMUpstreamError,
  RUN_STORE_UNAVAILABLE: RunStoreUnavailableError,
  MAX_STEPS_EXCEEDED: MaxStepsExceededError,
  RUN_TIMED_OUT: RunTimedOutError,
  RUN_CANCELLED: RunCancelledError,
  RUN_INTERRUPTED: RunInterruptedError,
  SESSION_BUSY: SessionBusyError,
  SESSION_NOT_FOUND: SessionNotFoundError,
  INTERRUPT_NOT_FOUND: InterruptNotFoundError,
  INTERRUPT_ALREADY_RESOLVED: InterruptAlreadyResolvedError,
  AGENT_DEPTH_EXCEEDED: AgentDepthExceededError,
  INTERNAL: InternalError,
};

interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

// google.rpc.ErrorInfo: reason = 1, domain = 2, map<string, string> metadata = 3.
function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const reader = new BinaryReader(bytes);
  const info: ErrorInfo = { reason: "", domain: "", metadata: {} };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) info.reason = reader.string();
    else if (field === 2) info.domain = reader.string();
    else if (field === 3) {
      const entry = new BinaryReader(reader.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const [f] = entry.tag();
        if (f === 1) key = entry.string();
        else value = entry.string();
      }
      info.metadata[key] = value;
    } else reader.skip(wireType);
  }
  return info;
}

// google.rpc.BadRequest: repeated FieldViolation field_violations = 1 { field = 1, description = 2 }.
function decodeBadRequest(bytes: Uint8Array): FieldViolation[] {
  const reader = new BinaryReader(bytes);
  const out: FieldViolation[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field !== 1) {
      reader.skip(wireType);
      continue;
    }
    const item = new BinaryReader(reader.bytes());
    const violation: FieldViolation = { field: "", description: "" };
    while (item.pos < item.len) {
      const [f, w] = item.tag();
      if (f === 1) violation.field = item.string();
      else if (f === 2) violation.description = item.string();
      else item.skip(w);
    }
    out.push(violation);
  }
  return out;
}

/** The typed error for anything a call threw. */
export function toAgentStreamError(error: unknown): AgentStreamError {
  if (error instanceof AgentStreamError) return error;
  const connectError = ConnectError.from(error);
  let info: ErrorInfo | undefined;
  const violations: FieldViolation[] = [];
  for (const detail of connectError.details) {
    if (!("type" in detail)) continue;
    if (detail.type === "google.rpc.ErrorInfo") info = decodeErrorInfo(detail.value);
    else if (detail.type === "google.rpc.BadRequest") violations.push(...decodeBadRequest(detail.value));
  }
  if (!info || info.domain !== ERROR_DOMAIN)
    return new TransportError(connectError.rawMessage, connectError.code, "", {}, violations);
  // A reason this SDK does not know yet stays a plain AgentStreamError carrying the server's reason.
  const cls = Object.hasOwn(ERRORS_BY_REASON, info.reason) ? ERRORS_BY_REASON[info.reason] : AgentStreamError;
  return new cls(connectError.rawMessage, connectError.code, info.reason, info.metadata, violations);
}

/** The Code for a canonical gRPC code name ("UNAVAILABLE", "CANCELLED", ...); Unknown when it is none. */
export function codeFromName(name: string): Code {
  if (name === "CANCELLED") return Code.Canceled;
  const key = name
    .toLowerCase()
    .split("_")
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("");
  const code = (Code as unknown as Record<string, unknown>)[key];
  return typeof code === "number" && name !== "" ? (code as Code) : Code.Unknown;
}

const BY_STATUS: Partial<Record<TaskStatus, [ErrorClass, Code, string]>> = {
  [TaskStatus.TIMED_OUT]: [RunTimedOutError, Code.DeadlineExceeded, "RUN_TIMED_OUT"],
  [TaskStatus.CANCELLED]: [RunCancelledError, Code.Canceled, "RUN_CANCELLED"],
  [TaskStatus.INTERRUPTED]: [RunInterruptedError, Code.Unavailable, "RUN_INTERRUPTED"],
};

/**
 * The typed error for an in-band failure (a terminal task payload with `success: false`), for callers who
 * prefer throwing to checking `success`: `throw errorForTask(msg.payload.value)`. The class comes from
 * `error.reason` (an unknown reason: a plain AgentStreamError carrying it), else from the status
 * (TIMED_OUT, CANCELLED, INTERRUPTED; otherwise InternalError). A successful payload throws a TypeError.
 */
export function errorForTask(task: TaskPayload): AgentStreamError {
  if (task.success) throw new TypeError("the task succeeded: there is no error for it");
  if (task.error) {
    const { reason, code, metadata } = task.error;
    const cls = Object.hasOwn(ERRORS_BY_REASON, reason) ? ERRORS_BY_REASON[reason] : AgentStreamError;
    return new cls(task.msg, codeFromName(code), reason, { ...metadata }, []);
  }
  const [cls, code, reason] = BY_STATUS[task.status] ?? [InternalError, Code.Internal, "INTERNAL"];
  return new cls(task.msg || TaskStatus[task.status], code, reason, {}, []);
}
