const { Router, createServer } = require('velocy');

const router = new Router({
  websocket: {
    heartbeatInterval: 30000,
    enableQueue: true
  }
});

// Track users
const users = new Map();

router.ws('/ws/chat', (ws, req) => {
  const userId = generateUserId();
  const username = req.query.username || `User${userId}`;
  
  // Store user info
  users.set(ws.id, { userId, username });
  ws.metadata = { userId, username };
  
  // Join default room
  ws.join('lobby');
  
  // Announce join
  router.room('lobby').broadcast({
    type: 'user-joined',
    username,
    timestamp: Date.now()
  }, { except: ws.id });
  
  // Handle messages
  ws.on('message', (data) => {
    const message = JSON.parse(data);
    
    switch (message.type) {
      case 'chat':
        router.room(message.room || 'lobby').broadcast({
          type: 'chat',
          from: username,
          text: message.text,
          timestamp: Date.now()
        });
        break;
        
      case 'join-room':
        ws.join(message.room);
        ws.send(JSON.stringify({
          type: 'joined-room',
          room: message.room
        }));
        break;
        
      case 'leave-room':
        ws.leave(message.room);
        break;
        
      case 'private-message':
        const recipient = findUserByUsername(message.to);
        if (recipient) {
          router.getWebSocketRouter().wsServer.sendTo(recipient.id, {
            type: 'private-message',
            from: username,
            text: message.text
          });
        }
        break;
    }
  });
  
  // Handle disconnect
  ws.on('close', () => {
    users.delete(ws.id);
    
    router.room('lobby').broadcast({
      type: 'user-left',
      username,
      timestamp: Date.now()
    });
  });
});

function generateUserId() {
  return Math.random().toString(36).substr(2, 9);
}

function findUserByUsername(username) {
  for (const [id, user] of users) {
    if (user.username === username) {
      return { id, ...user };
    }
  }
  return null;
}

const server = createServer(router);
server.listen(3000, () => {
  console.log('Chat server running on ws://localhost:3000/ws/chat');
});
