// Entry point: reads the page's config (json_script in example/react.html) and mounts the chat.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import App from './App.jsx';
import './app.css';

const config = JSON.parse(document.getElementById('react-config').textContent);

createRoot(document.getElementById('react-root')).render(
  <StrictMode>
    <App config={config} />
  </StrictMode>,
);
