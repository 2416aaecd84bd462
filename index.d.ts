// Public types of velocy. The runtime is index.js + lib/; these declarations are the contract.

import { EventEmitter } from 'node:events';

export declare const WS_OPCODES: Readonly<{
  CONTINUATION: 0x0;
  TEXT: 0x1;
  BINARY: 0x2;
  CLOSE: 0x8;
  PING: 0x9;
  PONG: 0xa;
}>;

export declare const WS_CLOSE_CODES: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  UNSUPPORTED_DATA: 1003;
  NO_STATUS_RECEIVED: 1005;
  ABNORMAL_CLOSURE: 1006;
  INVALID_FRAME_PAYLOAD: 1007;
  POLICY_VIOLATION: 1008;
  MESSAGE_TOO_BIG: 1009;
  MANDATORY_EXTENSION: 1010;
  INTERNAL_ERROR: 1011;
  SERVICE_RESTART: 1012;
  TRY_AGAIN_LATER: 1013;
}>;

export declare const WS_STATES: Readonly<{
  CONNECTING: 0;
  OPEN: 1;
  CLOSING: 2;
  CLOSED: 3;
}>;

export type ReadyState = 0 | 1 | 2 | 3;
/** Strings are sent as text, binary data as binary, anything else as JSON text. */
export type MessageData = string | Buffer | ArrayBufferView | ArrayBuffer | object | number | boolean;

export interface WebSocketOptions {
  /** Ping interval in ms; 0 turns heartbeats off. @default 30000 */
  heartbeatInterval?: number;
  /** Close a peer that sent nothing (no pong, no data) for this many ms. @default 60000 */
  heartbeatTimeout?: number;
  /** Largest message in bytes, all fragments together; larger closes with 1009. @default 419430400 */
  maxPayloadSize?: number;
  /** Queue `wsServer.sendTo` messages for clients that are not connected. @default false */
  enableQueue?: boolean;
  /** Messages queued per absent client. @default 100 */
  maxQueueSize?: number;
  /** How long a queued message is kept, in ms. @default 300000 */
  queueTTL?: number;
  /** Messages queued for all absent clients together; beyond it sendTo returns false. @default 100000 */
  maxQueuedMessages?: number;
  /** A stable id for a connection (becomes ws.id), derived from the app's own authentication. */
  identify?: ((req: WebSocketRequest) => string | null | undefined) | null;
  /** How long a handshake may take, from accept to the 101 response, in ms. @default 10000 */
  handshakeTimeout?: number;
  /**
   * Bytes queued for one peer above which `send` returns false (a 'drain' event follows),
   * broadcasts skip the peer (or close it, see closeOnBackpressureLimit) and its input is not
   * read until it drains. @default 4194304
   */
  maxBackpressure?: number;
  /** Broadcasts close a peer over maxBackpressure with 1008 'Slow consumer' instead of skipping it. @default false */
  closeOnBackpressureLimit?: boolean;
  /** Picks a subprotocol from those the client offers; a falsy result accepts without one. */
  handleProtocols?: ((protocols: string[]) => string | null | undefined | false) | null;
}

export interface RouterOptions {
  websocket?: WebSocketOptions;
}

/** The upgrade request, as handlers see it. */
export interface WebSocketRequest {
  method: string;
  url: string;
  path: string;
  /** Lower-case header names. */
  headers: Record<string, string | string[]>;
  params: Record<string, string>;
  /** A repeated key becomes an array. */
  query: Record<string, string | string[]>;
  remoteAddress: string;
  remotePort: number;
  /** The route pattern that matched. */
  route: string;
}

export interface ConnectionInfo {
  id: string;
  state: ReadyState;
  rooms: string[];
  metadata: Record<string, any>;
  remoteAddress: string;
  remotePort: number;
}

export interface SendOptions {
  /** Send a string or object as a binary frame. */
  binary?: boolean;
}

export interface BroadcastOptions extends SendOptions {
  /** A connection id, or several, that must not receive the message. */
  except?: string | string[];
}

export declare class WebSocketConnection extends EventEmitter {
  /** UUID v4. */
  readonly id: string;
  metadata: Record<string, any>;
  readonly readyState: ReadyState;
  /** Same as readyState. */
  readonly state: ReadyState;
  /** The negotiated subprotocol, or ''. */
  readonly protocol: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The route pattern that accepted the connection. */
  readonly route: string;
  readonly rooms: Set<string>;
  /** Bytes queued for this peer and not yet written to its socket. */
  readonly bufferedAmount: number;
  /** Returns false when the connection is not open. */
  send(data: MessageData, options?: SendOptions): boolean;
  sendBinary(data: string | Buffer | ArrayBufferView | ArrayBuffer): boolean;
  /** Data is at most 125 bytes. */
  ping(data?: string | Buffer | ArrayBufferView | ArrayBuffer): boolean;
  pong(data?: string | Buffer | ArrayBufferView | ArrayBuffer): boolean;
  /** code defaults to 1000; reason is at most 123 bytes of UTF-8. Throws RangeError otherwise. */
  close(code?: number, reason?: string): void;
  /** Drops the connection without a closing handshake (close code 1006). */
  terminate(): void;
  join(room: string): boolean;
  leave(room: string): boolean;
  inRoom(room: string): boolean;
  getInfo(): ConnectionInfo;

  on(event: 'message', listener: (data: string | Buffer, isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number, reason: string) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'ping' | 'pong', listener: (data: Buffer) => void): this;
  on(event: 'drain', listener: () => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export type Next = (err?: unknown) => void;
export type Handler =
  | ((ws: WebSocketConnection, req: WebSocketRequest) => void | Promise<void>)
  | ((ws: WebSocketConnection, req: WebSocketRequest, next: Next) => void | Promise<void>);

export interface Room {
  readonly name: string;
  broadcast(data: MessageData, options?: BroadcastOptions): void;
  size(): number;
  getConnections(): WebSocketConnection[];
}

export interface RouteGroup {
  readonly pattern: string;
  broadcast(data: MessageData, options?: BroadcastOptions): void;
  getConnections(): WebSocketConnection[];
}

export interface ErrorContext {
  route: string;
  params: Record<string, string>;
  query: Record<string, string | string[]>;
  /**
   * For an error in middleware or a route handler, the request they got. For one in a
   * listener (after the handlers ran), the request as the connection keeps it: everything
   * but the headers (`headers` is empty; keep what you need from them in a handler).
   */
  req: WebSocketRequest;
}

export interface Stats {
  connections: number;
  rooms: number;
  routes: number;
  queuedMessages: number;
}

export interface WsServer {
  /** Sends to a connection by id; queues it when the client is absent and the queue is on. */
  sendTo(id: string, data: MessageData, options?: SendOptions): boolean;
  getConnection(id: string): WebSocketConnection | null;
  getRoom(name: string): WebSocketConnection[];
  broadcast(data: MessageData, options?: BroadcastOptions): void;
  broadcastToRoom(room: string, data: MessageData, options?: BroadcastOptions): void;
  getStats(): Stats;
  closeAll(code?: number, reason?: string): void;
}

export interface WebSocketRouter {
  error(handler: (error: unknown, ws: WebSocketConnection, context: ErrorContext) => void): this;
  getStats(): Stats;
  /** @default code 1001, reason 'Server shutdown' */
  closeAll(code?: number, reason?: string): void;
  use(...middleware: Handler[]): this;
  ws(path: string, ...handlers: Handler[]): this;
  route(path: string, ...handlers: Handler[]): this;
  room(name: string): Room;
  to(path: string): RouteGroup;
  broadcast(data: MessageData, options?: BroadcastOptions): void;
  readonly wsServer: WsServer;
}

export declare class Router {
  constructor(options?: RouterOptions);
  ws(path: string, ...handlers: Handler[]): this;
  use(...middleware: Handler[]): this;
  room(name: string): Room;
  to(path: string): RouteGroup;
  broadcast(data: MessageData, options?: BroadcastOptions): void;
  getWebSocketRouter(): WebSocketRouter;
  configureWebSocket(options: WebSocketOptions): this;
}

export interface AddressInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

export interface ListenOptions {
  port?: number;
  host?: string;
  backlog?: number;
}

export declare class Server extends EventEmitter {
  readonly listening: boolean;
  /** True when created with TLS options (wss://). */
  readonly secure: boolean;
  listen(port?: number, host?: string, backlog?: number, callback?: () => void): this;
  listen(port?: number, host?: string, callback?: () => void): this;
  listen(port?: number, callback?: () => void): this;
  listen(options: ListenOptions, callback?: () => void): this;
  address(): AddressInfo | null;
  /**
   * Stops accepting, sends close (default 1001 'Server shutdown') to every peer after what is
   * already queued for it, waits for the close handshakes up to `timeout` ms (default 10000),
   * terminates the rest, and resolves once the server has emitted 'close'.
   */
  shutdown(options?: { timeout?: number; code?: number; reason?: string }): Promise<void>;
  /** Stops accepting; 'close' follows once every connection has ended. */
  close(callback?: (err?: Error) => void): this;
  ref(): this;
  unref(): this;
  on(event: 'listening' | 'close', listener: () => void): this;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export interface ServerOptions {
  /** PEM private key: with `cert`, the server speaks wss:// (TLS). */
  key?: string | Buffer;
  /** PEM certificate chain. */
  cert?: string | Buffer;
}

export declare function createServer(router: Router, options?: ServerOptions): Server;
