// goevents: a Go hub in the Gorilla pattern that speaks hubbub's events
// (PROTOCOL.md: join_room, send_message -> new_message with per-room offsets),
// so that the scenarios with rooms (F2, F4) have a Go reference point too.
//
// One hub goroutine owns rooms and offsets; each client has a read pump and a
// write pump with a bounded send channel (a client that cannot keep up is
// dropped). A message is encoded once and prepared once for every member
// (websocket.PreparedMessage). Each frame is its own write: PROTOCOL.md puts
// one event in a frame, and gorilla/websocket flushes every frame it writes.
//
// With -coalesce it is instead built the way hubbub is: the hub frames a
// message once (the same bytes for every member), and each write pump drains
// every frame queued for its client into one write on the socket. That is the
// fastest design Go has here, to compare hubbub's write count against.
// Built in GOPATH mode from Debian's gorilla/websocket (benchmarks/run.sh).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

const maxMessage = 65536

var coalesce = flag.Bool("coalesce", false, "frame once per publish, one write per drained send queue")

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(r *http.Request) bool { return true },
}

type envelope struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

type sendPayload struct {
	Room    string          `json:"room"`
	Message json.RawMessage `json:"message"`
	From    string          `json:"from"`
}

type roomPayload struct {
	Room string `json:"room"`
}

type membership struct {
	c    *client
	room string
}

type publish struct {
	room, from string
	message    json.RawMessage
}

type hub struct {
	rooms      map[string]map[*client]bool
	offsets    map[string]int
	join       chan membership
	publish    chan publish
	unregister chan *client
}

type client struct {
	hub   *hub
	conn  *websocket.Conn
	send  chan *websocket.PreparedMessage
	raw   chan []byte // -coalesce: whole server frames
	rooms []string
}

func (h *hub) run() {
	for {
		select {
		case m := <-h.join:
			members := h.rooms[m.room]
			if members == nil {
				members = map[*client]bool{}
				h.rooms[m.room] = members
			}
			if !members[m.c] {
				members[m.c] = true
				m.c.rooms = append(m.c.rooms, m.room)
			}
		case c := <-h.unregister:
			h.drop(c)
		case p := <-h.publish:
			h.offsets[p.room]++
			room, _ := json.Marshal(p.room)
			from, _ := json.Marshal(p.from)
			event := make([]byte, 0, 160+len(p.message))
			event = append(event, `{"type":"new_message","payload":{"room":`...)
			event = append(event, room...)
			event = append(event, `,"message":`...)
			event = append(event, p.message...)
			event = append(event, `,"from":`...)
			event = append(event, from...)
			event = append(event, `,"sent":"`...)
			event = append(event, time.Now().UTC().Format("2006-01-02T15:04:05.000Z")...)
			event = append(event, `","offset":`...)
			event = strconv.AppendInt(event, int64(h.offsets[p.room]), 10)
			event = append(event, "}}"...)
			if *coalesce {
				frame := textFrame(event)
				for c := range h.rooms[p.room] {
					select {
					case c.raw <- frame:
					default:
						h.drop(c)
					}
				}
				continue
			}
			pm, err := websocket.NewPreparedMessage(websocket.TextMessage, event)
			if err != nil {
				continue
			}
			for c := range h.rooms[p.room] {
				select {
				case c.send <- pm:
				default: // a client that cannot keep up is dropped
					h.drop(c)
				}
			}
		}
	}
}

// drop removes c from the hub once; closing its send channel ends its write pump.
func (h *hub) drop(c *client) {
	if c.rooms == nil {
		return
	}
	for _, r := range c.rooms {
		delete(h.rooms[r], c)
	}
	c.rooms = nil
	close(c.send)
	close(c.raw)
}

// textFrame is an unmasked, final text frame around payload (RFC 6455 5.2).
func textFrame(payload []byte) []byte {
	n := len(payload)
	var frame []byte
	switch {
	case n < 126:
		frame = append(make([]byte, 0, 2+n), 0x81, byte(n))
	case n < 65536:
		frame = append(make([]byte, 0, 4+n), 0x81, 126, byte(n>>8), byte(n))
	default:
		frame = append(make([]byte, 0, 10+n), 0x81, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(frame, payload...)
}

// rawPump writes every frame queued for the client in one socket write.
func (c *client) rawPump() {
	defer c.conn.Close()
	out := c.conn.UnderlyingConn()
	buf := make([]byte, 0, 4096)
	for frame := range c.raw {
		buf = append(buf[:0], frame...)
	drain:
		for {
			select {
			case more, ok := <-c.raw:
				if !ok {
					break drain
				}
				buf = append(buf, more...)
			default:
				break drain
			}
		}
		out.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := out.Write(buf); err != nil {
			return
		}
	}
	c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
}

func (c *client) readPump() {
	defer func() { c.hub.unregister <- c; c.conn.Close() }()
	c.conn.SetReadLimit(maxMessage)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		var env envelope
		if json.Unmarshal(data, &env) != nil {
			continue
		}
		switch env.Type {
		case "join_room":
			var p roomPayload
			if json.Unmarshal(env.Payload, &p) == nil && p.Room != "" {
				c.hub.join <- membership{c, p.Room}
			}
		case "send_message":
			var p sendPayload
			if json.Unmarshal(env.Payload, &p) == nil && p.Room != "" {
				if p.From == "" {
					p.From = "anonymous"
				}
				c.hub.publish <- publish{room: p.Room, from: p.From, message: p.Message}
			}
		}
	}
}

func (c *client) writePump() {
	defer c.conn.Close()
	for pm := range c.send {
		c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.conn.WritePreparedMessage(pm); err != nil {
			return
		}
	}
	c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	h := &hub{
		rooms:      map[string]map[*client]bool{},
		offsets:    map[string]int{},
		join:       make(chan membership),
		publish:    make(chan publish, 1024),
		unregister: make(chan *client),
	}
	go h.run()
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{hub: h, conn: conn, send: make(chan *websocket.PreparedMessage, 256), raw: make(chan []byte, 256), rooms: []string{}}
		if *coalesce {
			go c.rawPump()
		} else {
			go c.writePump()
		}
		go c.readPump()
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
