-- Demo catalogue, so a fresh clone has something to sell.
INSERT INTO product (product_id, name, description, price_cents, stock, on_sale, image_url, sort_order) VALUES
('100010090091', '测试商品', 'The original project''s test product: a small digital gift, delivered at once.', 168, 1000, TRUE, '/public/img/gift.svg', 1),
('100010090092', 'Green Tea, 250 g', 'Spring-picked Longjing from Hangzhou, vacuum packed.', 5800, 120, TRUE, '/public/img/tea.svg', 2),
('100010090093', 'Ceramic Mug', 'Hand-glazed celadon mug, 350 ml, dishwasher safe.', 3999, 40, TRUE, '/public/img/mug.svg', 3),
('100010090094', 'Notebook', 'A5 dotted notebook, 160 pages of 100 g paper, lies flat.', 1250, 300, TRUE, '/public/img/notebook.svg', 4),
('100010090095', 'Umbrella', 'Compact windproof umbrella that opens and closes with one hand.', 8900, 15, TRUE, '/public/img/umbrella.svg', 5);
