UPDATE product SET name = 'Green Tea, 250 g', description = 'Spring-picked Longjing from Hangzhou, vacuum packed.'
    WHERE product_id = '100010090092' AND name = '龙井绿茶 250g';
UPDATE product SET name = 'Ceramic Mug', description = 'Hand-glazed celadon mug, 350 ml, dishwasher safe.'
    WHERE product_id = '100010090093' AND name = '青瓷马克杯';
UPDATE product SET name = 'Notebook', description = 'A5 dotted notebook, 160 pages of 100 g paper, lies flat.'
    WHERE product_id = '100010090094' AND name = 'A5 点阵笔记本';
UPDATE product SET name = 'Umbrella', description = 'Compact windproof umbrella that opens and closes with one hand.'
    WHERE product_id = '100010090095' AND name = '晴雨伞';
UPDATE product SET description = 'The original project''s test product: a small digital gift, delivered at once.'
    WHERE product_id = '100010090091' AND name = '测试商品';
